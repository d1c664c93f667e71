"""The report's summary: which artifact to ship to each device class, by one stated rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from edgeport.report.rows import PROXY, ReportRow, artifact_name

if TYPE_CHECKING:
    from edgeport.report.model import Report

RULE = ("For each device class: among the artifacts made for it whose mAP50-95 drop against the float baseline "
        "is within the budget, the fastest (lowest p50 latency); artifacts without a latency (proxies) rank after "
        "timed ones, smallest first. For the Raspberry Pi a row measured on an arm64 machine is preferred over "
        "this host's. Latency is this host's unless the row says otherwise; a proxy's accuracy is its proxy's.")


def points(value: float) -> str:
    """e.g. '1 point', '0.5 points'."""
    return f"{value:g} point" + ("" if value == 1 else "s")


def _full_integer_tflite(row: ReportRow) -> bool:
    return row.target == "edgetpu" or (row.target == "tflite" and row.precision == "int8"
                                       and row.io.split(" ")[0] in ("uint8", "int8"))


@dataclass(frozen=True)
class DeviceClass:
    """A kind of device and which report rows are made for it; `caveat` says what this host's numbers are."""

    name: str
    accepts: Callable[[ReportRow], bool]
    caveat: str
    prefer: str | None = None  # a measured_on prefix preferred when present (rows measured on that machine)
    hint: str = ""  # how to get an artifact for it


DEVICE_CLASSES = (
    DeviceClass("Coral Edge TPU", _full_integer_tflite,
                "the full-integer TFLite the Edge TPU compiler maps; accuracy and latency of its CPU run here",
                hint="edgeport convert MODEL --target edgetpu --data DATA.yaml"),
    DeviceClass("Raspberry Pi CPU", lambda r: r.target in ("tflite", "onnx", "ncnn"),
                "CPU latency of this host unless measured on arm64", prefer="arm64",
                hint="edgeport convert MODEL --target tflite --int8 --data DATA.yaml"),
    DeviceClass("Jetson", lambda r: r.target == "tensorrt",
                "the ONNX the engine is built from, run in onnxruntime (the engine's proxy)",
                hint="edgeport convert MODEL --target tensorrt --int8 --data DATA.yaml"),
    DeviceClass("iPhone / Mac", lambda r: r.target == "coreml",
                "off macOS: the proxy named in the package's record",
                hint="edgeport convert MODEL --target coreml --int8-weights --data DATA.yaml"),
    DeviceClass("browser", lambda r: r.target == "onnx-web",
                "accuracy of the page's model file in onnxruntime; in-browser latency in the row's note",
                hint="edgeport convert MODEL --target onnx-web --int8 --data DATA.yaml"),
)


@dataclass
class Recommendation:
    """The artifact recommended for one device class, or None with the reason."""

    device: str
    row: ReportRow | None
    why: str
    caveat: str
    candidates: int = 0

    @property
    def is_proxy(self) -> bool:
        return self.row is not None and self.row.status == PROXY

    def to_dict(self) -> dict[str, Any]:
        row = self.row
        return {"device": self.device, "artifact": row.artifact if row else None,
                "name": artifact_name(row.artifact) if row else None, "target": row.target if row else None,
                "precision": row.precision if row else None, "drop_map50_95": row.drop_map50_95 if row else None,
                "map50_95": row.map50_95 if row else None, "latency_ms_p50": row.latency_ms_p50 if row else None,
                "size_bytes": row.size_bytes if row else None, "measured_on": row.measured_on if row else None,
                "proxy": row.proxy if row and row.status == PROXY else None, "why": self.why, "caveat": self.caveat,
                "candidates": self.candidates}


def _speed_key(row: ReportRow) -> tuple:
    return (row.latency_ms_p50 is None, row.latency_ms_p50 or 0.0, row.size_bytes, row.drop_map50_95 or 0.0)


def recommend(device: DeviceClass, rows: list[ReportRow], budget: float) -> Recommendation:
    """Apply RULE to one device class."""
    made = [r for r in rows if device.accepts(r) and not r.baseline]
    scored = [r for r in made if r.drop_map50_95 is not None]
    if not scored:
        why = (f"no artifact for it in this report: {device.hint}" if not made
               else "its artifacts were not measured on this host (see their rows)")
        return Recommendation(device.name, None, why, device.caveat, len(made))
    within = [r for r in scored if r.drop_map50_95 <= budget]
    if not within:
        best = min(scored, key=lambda r: r.drop_map50_95)
        return Recommendation(device.name, None, f"none within the budget of {points(budget)} (the closest, "
                              f"{artifact_name(best.artifact)}, drops {best.drop_map50_95:.2f})", device.caveat,
                              len(made))
    preferred = [r for r in within if device.prefer and r.measured_on.startswith(device.prefer)]
    pick = min(preferred or within, key=_speed_key)
    speed = f"p50 {pick.latency_ms_p50:.1f} ms" if pick.latency_ms_p50 is not None else "no latency (proxy)"
    where = f"; measured on {pick.measured_on}" if preferred else ""
    why = (f"fastest of {len(within)} within {points(budget)}: drop {pick.drop_map50_95:+.2f}, {speed}, "
           f"{pick.size_bytes / 1e6:.1f} MB{where}")
    return Recommendation(device.name, pick, why, device.caveat, len(made))


def summarize(report: "Report") -> list[Recommendation]:
    """One recommendation per device class, in DEVICE_CLASSES order."""
    return [recommend(device, report.rows, report.budget) for device in DEVICE_CLASSES]
