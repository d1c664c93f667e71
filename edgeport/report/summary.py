"""The report's summary: which artifact to ship to each device class, by one stated rule."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from edgeport.report.rows import PROXY, ReportRow, artifact_name, is_emulated

if TYPE_CHECKING:
    from edgeport.report.model import Report

RULE = ("For each device class: among the artifacts made for it whose mAP50-95 drop against the float baseline "
        "is within the budget, the fastest (lowest p50 latency); artifacts without a latency (proxies, simulators) "
        "rank after timed ones, smallest first. For the Raspberry Pi / ARM CPU a row measured on an arm64 machine "
        "is preferred over this host's; a row measured under emulation (qemu) ranks by the latency of the same "
        "file on this host, since a latency under qemu is not a Pi's. Latency is this host's unless the row says "
        "otherwise; a proxy's accuracy is its proxy's.")


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
    native: str | None = None  # a measured_on prefix whose latency is the device's own kind of CPU


DEVICE_CLASSES = (
    DeviceClass("Coral Edge TPU", _full_integer_tflite,
                "the full-integer TFLite the Edge TPU compiler maps; accuracy and latency of its CPU run here",
                hint="edgeport convert MODEL --target edgetpu --data DATA.yaml"),
    DeviceClass("Raspberry Pi / ARM CPU", lambda r: r.target in ("tflite", "onnx", "ncnn"),
                "TFLite, ONNX and NCNN on the CPU; accuracy of the arm64 interpreters where a row was measured on "
                "arm64", prefer="arm64", native="arm64",
                hint="edgeport convert MODEL --target tflite,ncnn --data DATA.yaml"),
    DeviceClass("Intel CPU / GPU / NPU (OpenVINO)", lambda r: r.target == "openvino",
                "OpenVINO's CPU plugin on this host; an Intel GPU or NPU (the GPU and NPU plugins) was not measured",
                native="x86",
                hint="edgeport convert MODEL --target openvino --int8 --data DATA.yaml"),
    DeviceClass("Jetson", lambda r: r.target == "tensorrt",
                "the ONNX the engine is built from, run in onnxruntime (the engine's proxy)",
                hint="edgeport convert MODEL --target tensorrt --int8 --data DATA.yaml"),
    DeviceClass("Rockchip NPU", lambda r: r.target == "rknn",
                "accuracy of rknn-toolkit2's simulator on x86 running the same build, not the board's NPU; no "
                "latency: the simulator's timing is not the NPU's",
                hint="edgeport convert MODEL --target rknn --int8 --data DATA.yaml --platform rk3588"),
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
    latency_ms_p50: float | None = None  # the latency the pick was ranked by (its own, or its file's on this host)
    latency_on: str = ""  # where that latency was measured

    @property
    def is_proxy(self) -> bool:
        return self.row is not None and self.row.status == PROXY

    def to_dict(self) -> dict[str, Any]:
        row = self.row
        return {"device": self.device, "artifact": row.artifact if row else None,
                "name": artifact_name(row.artifact) if row else None, "target": row.target if row else None,
                "precision": row.precision if row else None, "drop_map50_95": row.drop_map50_95 if row else None,
                "map50_95": row.map50_95 if row else None, "latency_ms_p50": self.latency_ms_p50,
                "latency_measured_on": self.latency_on or None,
                "size_bytes": row.size_bytes if row else None, "measured_on": row.measured_on if row else None,
                "proxy": row.proxy if row and row.status == PROXY else None, "why": self.why, "caveat": self.caveat,
                "candidates": self.candidates}


def _timing(row: ReportRow, rows: list[ReportRow]) -> tuple[float | None, str]:
    """(p50 ms, where) a row ranks by: its own latency, or for a row measured under emulation the latency of
    the same file measured on this host (None when there is none)."""
    if not is_emulated(row):
        return row.latency_ms_p50, row.measured_on if row.latency_ms_p50 is not None else ""
    twin = next((r for r in rows if r.artifact == row.artifact and r.latency_ms_p50 is not None
                 and not is_emulated(r) and not r.measured_on.startswith("arm64")), None)
    return (twin.latency_ms_p50, twin.measured_on) if twin else (None, "")


def _latency_text(row: ReportRow, p50: float | None, where: str) -> str:
    if p50 is None:
        if row.status == PROXY:
            return "no latency (simulator)" if (row.proxy or "").startswith("simulator") else "no latency (proxy)"
        return "no latency (measured under emulation only)" if is_emulated(row) else "no latency"
    text = f"p50 {p50:.1f} ms"
    return text + (f" on this host ({where}), not under qemu" if is_emulated(row) else "")


def caveat_of(device: DeviceClass, pick: ReportRow | None, where: str) -> str:
    """The class's caveat, plus what the pick's numbers are when they are not the device's: accuracy under
    emulation (whose latency is never used), a latency measured on an x86 host for an ARM board."""
    notes = [device.caveat]
    if pick is not None:
        if is_emulated(pick):
            notes.append("accuracy measured inside the emulated Raspberry Pi (arm64 under qemu); a latency under "
                         "qemu is not a Pi's latency")
        if where and device.native and not where.startswith(device.native):
            notes.append(f"latency measured on {where.split(',')[0]} (this host), not on the device")
    return "; ".join(notes)


def _speed_key(row: ReportRow, p50: float | None) -> tuple:
    return (p50 is None, p50 or 0.0, row.size_bytes, row.drop_map50_95 or 0.0)


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
    timing = {id(r): _timing(r, rows) for r in within}
    pick = min(preferred or within, key=lambda r: _speed_key(r, timing[id(r)][0]))
    p50, where = timing[id(pick)]
    measured = f"; measured on {pick.measured_on}" if preferred else ""
    why = (f"fastest of {len(within)} within {points(budget)}: drop {pick.drop_map50_95:+.2f}, "
           f"{_latency_text(pick, p50, where)}, {pick.size_bytes / 1e6:.1f} MB{measured}")
    return Recommendation(device.name, pick, why, caveat_of(device, pick, where), len(made), p50, where)


def summarize(report: "Report") -> list[Recommendation]:
    """One recommendation per device class, in DEVICE_CLASSES order."""
    return [recommend(device, report.rows, report.budget) for device in DEVICE_CLASSES]
