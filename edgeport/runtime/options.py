"""The one builder of runtime options: backend, threads, execution providers, device, thread spinning.

`RuntimeOptions` is what `detect`, `evaluate`, `run`, the daemon and the Python API (`Detector`) share;
`backend_kwargs` turns it into one backend's constructor arguments and refuses an option that backend lacks.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgeport.errors import BackendError

# which backends take which option (the name of the backend's own constructor argument)
DEVICE_ARGUMENT = {"edgetpu": "device", "coreml": "compute_units", "openvino": "device", "rknn": "core_mask"}


def shared_core_threads() -> int:
    """Interpreter threads when other work shares the cores (the daemon: capture, decode, HTTP): every core
    but one. A thread pool as wide as the machine stalls at each barrier on a thread the OS has preempted."""
    return max(1, (os.cpu_count() or 2) - 1)


def parse_providers(text: str | None) -> tuple[str, ...]:
    """`"cuda,cpu"` -> ("cuda", "cpu"); None or empty -> ()."""
    return tuple(p.strip() for p in (text or "").split(",") if p.strip())


@dataclass(frozen=True)
class RuntimeOptions:
    """How an artifact is opened.

    backend: registry name (default: by file type). threads: interpreter threads (None: the engine's
    default, every core). providers: onnxruntime execution providers in order (tensorrt, cuda, cpu).
    device: Edge TPU device (usb, usb:N, pci:N), CoreML compute units (ALL, CPU_ONLY, ...), OpenVINO
    device (CPU, GPU, NPU, AUTO) or RKNN NPU cores (auto, 0, 1, 2, 0_1, 0_1_2, all).
    spin: let idle onnxruntime (and NCNN's OpenMP) worker threads spin-wait (fastest on an idle machine; with
    the cores shared by capture, decode and HTTP it collapses, so it is off by default).
    """

    backend: str | None = None
    threads: int | None = None
    providers: tuple[str, ...] = ()
    device: str | None = None
    spin: bool = False

    def backend_kwargs(self, backend_name: str) -> dict[str, Any]:
        """Constructor arguments of backend `backend_name`; raises BackendError for an option it cannot honour."""
        kwargs: dict[str, Any] = {"threads": self.threads}
        if self.providers:
            if backend_name != "onnxruntime":
                raise BackendError(f"--providers chooses onnxruntime execution providers; the {backend_name} "
                                   "backend has none (it applies to .onnx artifacts)")
            kwargs["providers"] = list(self.providers)
        if backend_name in ("onnxruntime", "ncnn"):
            kwargs["spin"] = self.spin
        if self.device:
            if backend_name not in DEVICE_ARGUMENT:
                raise BackendError(f"--device {self.device!r} does not apply to the {backend_name} backend; it picks "
                                   "the Edge TPU (usb, usb:N, pci:N), CoreML's compute units or the OpenVINO device (CPU, GPU, NPU)")
            kwargs[DEVICE_ARGUMENT[backend_name]] = self.device
        return kwargs

    def open(self, model: str | Path, **detector_options: Any):
        """A `Detector` over `model` with these options (conf, iou, exif, max_pixels... pass through)."""
        from edgeport.runtime.detector import Detector

        return Detector(model, backend=self.backend, threads=self.threads, providers=self.providers,
                        device=self.device, spin=self.spin, **detector_options)

    @classmethod
    def from_args(cls, args: Any) -> "RuntimeOptions":
        """From the command line's runtime options (--backend, --threads, --providers, --device, --spin)."""
        return cls(backend=getattr(args, "backend", None), threads=getattr(args, "threads", None),
                   providers=parse_providers(getattr(args, "providers", None)),
                   device=getattr(args, "device", None), spin=bool(getattr(args, "spin", False)))
