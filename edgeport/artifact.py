"""The artifact contract: the metadata record every edgeport artifact carries.

Light on purpose (json + dataclasses): converters write records, the runtime reads them.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgeport.errors import ArtifactMismatchError, MetadataMissingError

SCHEMA = "edgeport.artifact/1"
METADATA_KEY = "edgeport"  # key of the record in ONNX metadata_props
SIDECAR_SUFFIX = ".edgeport.json"


@dataclass(frozen=True)
class TensorSpec:
    """Name, static shape, dtype and (for integer tensors) quantization of one model tensor."""

    name: str
    shape: tuple[int, ...]
    dtype: str  # numpy dtype name: float32, float16, uint8, int8
    scale: float | None = None
    zero_point: int | None = None

    @property
    def quantized(self) -> bool:
        return self.scale is not None and self.scale > 0 and self.dtype in ("uint8", "int8", "int16")

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype,
                "quantization": {"scale": self.scale, "zero_point": self.zero_point} if self.quantized else None}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "TensorSpec":
        quant = data.get("quantization") or {}
        return cls(name=str(data["name"]), shape=tuple(int(d) for d in data["shape"]), dtype=str(data["dtype"]),
                   scale=quant.get("scale"), zero_point=quant.get("zero_point"))


@dataclass(frozen=True)
class Preprocess:
    """How pixels become the input tensor: RGB, letterbox with `pad_value`, scaled by `scale`."""

    color: str = "RGB"
    scale: float = 1 / 255
    pad_value: int = 114
    letterbox: str = "center"
    interpolation: str = "area"  # "area" (area when shrinking) or "linear" (bilinear, as Ultralytics)


@dataclass(frozen=True)
class Decode:
    """Which outputs hold what.

    kind "split": `boxes` (1, N, 4) and `scores` (1, N, nc) tensors.
    kind "ultralytics": one tensor (1, 4 + nc, N), boxes as cx, cy, w, h then class scores.
    kind "dfl": per level (`levels`: box, cls tensor names, stride, grid) raw box distribution
    logits (1, h*w, 4 * reg_max) and class logits (1, h*w, nc), decoded in the runtime; with
    reg_max 1 (YOLO26, no DFL) the box tensor holds the ltrb distances in grid cells.
    kind "end2end": one tensor (1, K, 6) x1, y1, x2, y2, score, class (Ultralytics' NMS-free exports).
    `nms`: False for one-to-one (NMS-free) heads: the runtime keeps the top-k scores, never runs NMS.
    """

    kind: str = "split"
    boxes: str = "boxes"
    scores: str = "scores"
    box_format: str = "xyxy"  # xyxy, xywh (centre, size) or ltrb (distances, kind "dfl")
    normalized: bool = True  # boxes in 0..1 of the input size, else input pixels
    levels: tuple = ()
    reg_max: int = 16
    nms: bool = True


@dataclass(frozen=True)
class ArtifactRecord:
    """Everything the runtime must know to run an artifact correctly."""

    names: tuple[str, ...]
    imgsz: tuple[int, int]  # (height, width) of the model input
    layout: str  # NCHW or NHWC
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    preprocess: Preprocess = field(default_factory=Preprocess)
    decode: Decode = field(default_factory=Decode)
    target: str = "onnx"
    precision: str = "fp32"
    task: str = "detect"
    provenance: dict[str, Any] = field(default_factory=dict)
    artifact_sha256: str | None = None  # set in sidecar records, checked against the file
    origin: str = "edgeport"  # "edgeport", or "ultralytics" when derived from Ultralytics' own metadata

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["inputs"] = [t.to_dict() for t in self.inputs]
        data["outputs"] = [t.to_dict() for t in self.outputs]
        data["names"] = list(self.names)
        data["imgsz"] = list(self.imgsz)
        return {"schema": SCHEMA, **data}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=False)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "record") -> "ArtifactRecord":
        """Parse a record; raise ArtifactMismatchError naming the first missing or bad key."""
        if data.get("schema") != SCHEMA:
            raise ArtifactMismatchError(f"{where}: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
        try:
            return cls(
                names=tuple(str(n) for n in data["names"]),
                imgsz=(int(data["imgsz"][0]), int(data["imgsz"][1])),
                layout=str(data["layout"]),
                inputs=tuple(TensorSpec.from_dict(t) for t in data["inputs"]),
                outputs=tuple(TensorSpec.from_dict(t) for t in data["outputs"]),
                preprocess=Preprocess(**data.get("preprocess", {})),
                decode=Decode(**{**data.get("decode", {}),
                                 "levels": tuple(data.get("decode", {}).get("levels", ()))}),
                target=str(data.get("target", "unknown")),
                precision=str(data.get("precision", "unknown")),
                task=str(data.get("task", "detect")),
                provenance=dict(data.get("provenance", {})),
                artifact_sha256=data.get("artifact_sha256"),
                origin=str(data.get("origin", "edgeport")),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise ArtifactMismatchError(f"{where}: malformed metadata record ({type(exc).__name__}: {exc})") from exc


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Return the hex SHA-256 of a file, or of a directory artifact (a CoreML .mlpackage).

    A directory hashes the list of its files, each as `relative/path` NUL `sha256 of the file`,
    sorted by path: the model spec and the weights are bound, so is every other file in it.
    """
    path = Path(path)
    if path.is_dir():
        lines = [f"{p.relative_to(path).as_posix()}\0{sha256_file(p, chunk)}\n"
                 for p in sorted(path.rglob("*"), key=lambda p: p.relative_to(path).as_posix()) if p.is_file()]
        return hashlib.sha256("".join(lines).encode()).hexdigest()
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def artifact_size(path: str | Path) -> int:
    """Bytes of an artifact: the file, every file of a directory artifact (.mlpackage), or an OpenVINO
    IR's .xml with the .bin of its weights."""
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    weights = path.with_suffix(".bin")
    if path.suffix.lower() == ".xml" and weights.is_file():
        return path.stat().st_size + weights.stat().st_size
    return path.stat().st_size


def sidecar_path(artifact: str | Path) -> Path:
    """Return where the sidecar record of an artifact lives: model.tflite -> model.edgeport.json."""
    artifact = Path(artifact)
    return artifact.with_name(artifact.stem + SIDECAR_SUFFIX)


def write_sidecar(artifact: str | Path, record: ArtifactRecord) -> Path:
    """Write the record beside the artifact, bound to the file by its SHA-256; return the sidecar path."""
    from dataclasses import replace

    record = replace(record, artifact_sha256=sha256_file(artifact))
    path = sidecar_path(artifact)
    path.write_text(record.to_json())
    return path


def read_sidecar(artifact: str | Path) -> ArtifactRecord | None:
    """Return the sidecar record of an artifact, None when there is none.

    Raises ArtifactMismatchError when the record does not belong to this file.
    """
    path = sidecar_path(artifact)
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ArtifactMismatchError(f"{path}: unreadable metadata record ({exc})") from exc
    record = ArtifactRecord.from_dict(data, where=str(path))
    if record.artifact_sha256 and record.artifact_sha256 != sha256_file(artifact):
        raise ArtifactMismatchError(
            f"{path} describes a different file: its SHA-256 does not match {Path(artifact).name} "
            "(the model was replaced or modified after conversion; convert again)")
    return record


def check_io(record: ArtifactRecord, inputs: list[TensorSpec], outputs: list[TensorSpec], where: str) -> None:
    """Raise ArtifactMismatchError when the record's tensors disagree with what the interpreter reports."""
    problems: list[str] = []
    if len(record.inputs) != len(inputs):
        problems.append(f"{len(record.inputs)} inputs in the record, {len(inputs)} in the model")
    for ours, theirs in zip(record.inputs, inputs):
        _compare(ours, theirs, "input", problems)
    by_name = {t.name: t for t in outputs}
    for ours in record.outputs:
        theirs = by_name.get(ours.name)
        if theirs is None:
            problems.append(f"output {ours.name!r} is in the record but not in the model (has {sorted(by_name)})")
        else:
            _compare(ours, theirs, "output", problems)
    if problems:
        raise ArtifactMismatchError(f"{where}: metadata record does not match the model: " + "; ".join(problems))


def _compare(ours: TensorSpec, theirs: TensorSpec, kind: str, problems: list[str]) -> None:
    if tuple(ours.shape) != tuple(theirs.shape):
        problems.append(f"{kind} {ours.name!r} shape {list(ours.shape)} in the record, {list(theirs.shape)} in the model")
    if ours.dtype != theirs.dtype:
        problems.append(f"{kind} {ours.name!r} dtype {ours.dtype} in the record, {theirs.dtype} in the model")
    if ours.quantized != theirs.quantized or (
            ours.quantized and (abs(ours.scale - theirs.scale) > 1e-6 * abs(theirs.scale)
                                or ours.zero_point != theirs.zero_point)):
        problems.append(f"{kind} {ours.name!r} quantization differs between record and model")


def require(record: ArtifactRecord | None, path: str | Path) -> ArtifactRecord:
    """Return the record, or raise MetadataMissingError naming the artifact."""
    if record is None:
        raise MetadataMissingError(
            f"{path}: no edgeport metadata record (embedded, or {sidecar_path(path).name} beside it) and no "
            "Ultralytics metadata; convert the model with `edgeport convert` to get one")
    return record
