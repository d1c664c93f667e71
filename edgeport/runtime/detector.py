"""`Detector`: open any artifact and run the runtime pipeline (docs/design.md) on images.

decode (EXIF) -> RGB -> letterbox -> quantize input -> invoke -> dequantize -> decode boxes -> NMS
-> original pixel coordinates -> `Detections`.
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from edgeport.artifact import (
    METADATA_KEY,
    ArtifactRecord,
    Decode,
    Preprocess,
    check_io,
    read_sidecar,
    require,
)
from edgeport.errors import ArtifactMismatchError, ModelNotFoundError, UnsupportedModelError
from edgeport.runtime.backends import backend_for
from edgeport.runtime.backends.base import Backend
from edgeport.runtime.detections import Detections
from edgeport.runtime.image_io import (
    DEFAULT_MAX_PIXELS,
    ColorOrder,
    ImageSource,
    Reduction,
    load_for_model,
    load_image,
)
from edgeport.runtime.options import RuntimeOptions
from edgeport.runtime.postprocess import decode_outputs, dequantize, select_and_nms, select_topk
from edgeport.runtime.preprocess import Letterbox, letterbox, letterbox_batch, to_input_tensor


@dataclass(frozen=True)
class NmsOptions:
    """Score threshold, IoU threshold, detections kept per image, one or all classes per box."""

    conf: float = 0.25
    iou: float = 0.45
    max_det: int = 300
    multi_label: bool = False
    agnostic: bool = False


def _parse(value: Any) -> Any:
    if not isinstance(value, str):
        return value
    for parser in (json.loads, ast.literal_eval):
        try:
            return parser(value)
        except (ValueError, SyntaxError):
            continue
    return value


def record_from_ultralytics(meta: dict[str, str], backend: Backend) -> ArtifactRecord | None:
    """Derive a record from Ultralytics' own metadata (names, imgsz) and the model's tensors.

    Returns None when `meta` is not Ultralytics metadata; raises UnsupportedModelError for an
    Ultralytics model that is not a plain detector with one (1, 4 + nc, N) output.
    """
    if "names" not in meta or "imgsz" not in meta:
        return None
    names_raw = _parse(meta["names"])
    if isinstance(names_raw, dict):
        names = tuple(str(names_raw[k]) for k in sorted(names_raw, key=lambda k: int(k)))
    else:
        names = tuple(str(n) for n in names_raw)
    task = str(_parse(meta.get("task", "detect")))
    if task != "detect":
        raise UnsupportedModelError(f"{backend.path}: Ultralytics task {task!r} is not supported; only 'detect'")
    inp = backend.inputs[0]
    if len(inp.shape) != 4 or 3 not in (inp.shape[1], inp.shape[3]):
        raise UnsupportedModelError(f"{backend.path}: input shape {list(inp.shape)} is neither NCHW nor NHWC")
    layout = "NCHW" if inp.shape[1] == 3 else "NHWC"
    imgsz = (inp.shape[2], inp.shape[3]) if layout == "NCHW" else (inp.shape[1], inp.shape[2])
    shape = tuple(backend.outputs[0].shape) if len(backend.outputs) == 1 else ()
    end2end = len(shape) == 3 and shape[2] == 6 and shape[1] != 4 + len(names)
    if len(backend.outputs) != 1 or not (end2end or 4 + len(names) in shape[1:]):
        shapes = [list(o.shape) for o in backend.outputs]
        raise UnsupportedModelError(
            f"{backend.path}: outputs {shapes} are not one (1, 4 + {len(names)}, N) tensor, nor one (1, K, 6) "
            "NMS-free tensor (embedded-NMS exports with extra outputs are not supported)")
    out = backend.outputs[0]
    # Ultralytics normalizes box coordinates in its TFLite exports, not in ONNX; its LiteRT route (NCHW
    # input) leaves NMS-free rows in pixels, its older TensorFlow route (NHWC) normalizes them too.
    normalized = backend.path.suffix.lower() == ".tflite" and (not end2end or layout == "NHWC")
    decode = (Decode(kind="end2end", boxes=out.name, scores=out.name, box_format="xyxy", normalized=normalized,
                     nms=False) if end2end else
              Decode(kind="ultralytics", boxes=out.name, scores=out.name, box_format="xywh", normalized=normalized))
    return ArtifactRecord(
        names=names, imgsz=imgsz, layout=layout, inputs=tuple(backend.inputs), outputs=(out,),
        preprocess=Preprocess(interpolation="linear"),  # run Ultralytics' exports as Ultralytics runs them
        decode=decode,
        target=backend.path.suffix.lstrip(".").lower(),
        precision="int8" if inp.quantized or out.quantized else ("fp16" if inp.dtype == "float16" else "fp32"),
        provenance={"ultralytics_version": str(_parse(meta.get("version", "unknown")))}, origin="ultralytics")


def load_record(backend: Backend) -> ArtifactRecord:
    """Return the artifact's record: embedded, sidecar, or derived from Ultralytics metadata.

    Raises MetadataMissingError when there is none and ArtifactMismatchError when it disagrees
    with the model file.
    """
    meta = backend.embedded_metadata()
    record = None
    if METADATA_KEY in meta:
        try:
            record = ArtifactRecord.from_dict(json.loads(meta[METADATA_KEY]), where=f"{backend.path} (embedded)")
        except ValueError as exc:
            raise ArtifactMismatchError(f"{backend.path}: embedded metadata record is not JSON ({exc})") from exc
    record = record or read_sidecar(backend.path) or record_from_ultralytics(meta, backend)
    record = require(record, backend.path)
    check_io(record, backend.inputs, backend.outputs, str(backend.path))
    return record


class Detector:
    """An opened artifact that turns images into `Detections`.

    model: path of an artifact (.onnx, .tflite, ...). backend, threads, providers, device, spin: the
    runtime options (see edgeport.runtime.options.RuntimeOptions, the one place that maps them to the
    backend). exif: apply EXIF orientation to encoded images. max_pixels: decompression-bomb limit.
    backend_options: extra backend constructor arguments (tests, stand-ins).
    Raises ModelNotFoundError, CorruptModelError, MetadataMissingError, ArtifactMismatchError,
    BackendError or MissingDependencyError.
    """

    def __init__(self, model: str | Path, *, backend: str | None = None, threads: int | None = None,
                 providers: Sequence[str] = (), device: str | None = None, spin: bool = False,
                 conf: float = 0.25, iou: float = 0.45, max_det: int = 300, multi_label: bool = False,
                 agnostic: bool = False, exif: bool = True, max_pixels: int = DEFAULT_MAX_PIXELS,
                 backend_options: dict[str, Any] | None = None) -> None:
        self.path = Path(model)
        if not self.path.exists():  # a file, or a directory artifact (.mlpackage)
            raise ModelNotFoundError(f"model not found: {self.path}")
        self.options = RuntimeOptions(backend=backend, threads=threads, providers=tuple(providers), device=device,
                                      spin=spin)
        backend_class = backend_for(self.path, backend)
        kwargs = {**self.options.backend_kwargs(backend_class.name), **(backend_options or {})}
        self.backend: Backend = backend_class(self.path, **kwargs)
        self.record = load_record(self.backend)
        self.nms = NmsOptions(conf=conf, iou=iou, max_det=max_det, multi_label=multi_label, agnostic=agnostic)
        self.exif = exif
        self.max_pixels = max_pixels
        self._input = self.backend.inputs[0]
        self._batch_size = self._input.shape[0] if self._input.shape[0] > 0 else 0  # 0: dynamic

    @property
    def names(self) -> tuple[str, ...]:
        return self.record.names

    @property
    def imgsz(self) -> tuple[int, int]:
        return self.record.imgsz

    @property
    def batch_size(self) -> int:
        """The model's fixed batch size (1 for most edge artifacts); 0 when the batch is dynamic."""
        return self._batch_size

    @property
    def backend_name(self) -> str:
        return self.backend.name

    def load(self, image: ImageSource, color: ColorOrder = "BGR", exif: bool | None = None) -> np.ndarray:
        """Return RGB uint8 pixels of one image input (see edgeport.runtime.image_io.load_image).

        `exif` overrides the detector's own setting for this call.
        """
        return load_image(image, color=color, exif=self.exif if exif is None else exif, max_pixels=self.max_pixels)

    def preprocess(self, images_rgb: Sequence[np.ndarray],
                   interpolation: str | None = None) -> tuple[np.ndarray, list[Letterbox]]:
        """Letterbox each RGB image to the model size; return (input tensor, placements).

        `interpolation` overrides the record's ("area" or "linear") for this call.
        """
        canvases, placements = letterbox_batch(images_rgb, self.record.imgsz, self.record.preprocess.pad_value,
                                               interpolation or self.record.preprocess.interpolation)
        return self.to_tensor(canvases), placements

    def place(self, image_rgb: np.ndarray) -> tuple[np.ndarray, Letterbox]:
        """Letterbox one RGB image onto its own model-size canvas (H, W, 3) uint8; see `detect_canvases`."""
        return letterbox(image_rgb, self.record.imgsz, self.record.preprocess.pad_value,
                         self.record.preprocess.interpolation)

    def to_tensor(self, canvases: np.ndarray) -> np.ndarray:
        """The model's input tensor from letterboxed uint8 canvases (B, H, W, 3)."""
        return to_input_tensor(canvases, self._input, self.record.layout, self.record.preprocess.scale)

    def detect_canvases(self, canvases: np.ndarray, placements: Sequence[Letterbox],
                        nms: NmsOptions | None = None) -> list[Detections]:
        """Detect on canvases that `place` letterboxed (B, H, W, 3), any B (see `infer`)."""
        return self.postprocess(self.infer(self.to_tensor(canvases)), placements, nms)

    def infer(self, tensor: np.ndarray) -> dict[str, np.ndarray]:
        """Invoke the model on a batch of any size; dequantized outputs, one row per image.

        A model with a fixed batch N is invoked per N images, the last group padded with copies of its
        last image (their rows dropped); a dynamic-batch model takes the whole batch in one invoke.
        """
        fixed, count = self._batch_size, len(tensor)
        if fixed and count != fixed:
            parts = []
            for start in range(0, count, fixed):
                group = tensor[start:start + fixed]
                if len(group) < fixed:
                    group = np.concatenate([group, np.repeat(group[-1:], fixed - len(group), axis=0)])
                parts.append(self.backend.invoke(group))
            raw = [np.concatenate(chunk, axis=0)[:count] for chunk in zip(*parts)]
        else:
            raw = self.backend.invoke(tensor)
        return {spec.name: dequantize(out, spec) for spec, out in zip(self.backend.outputs, raw)}

    def postprocess(self, outputs: dict[str, np.ndarray], placements: Sequence[Letterbox],
                    nms: NmsOptions | None = None) -> list[Detections]:
        """Decode boxes, run NMS and map back to each original image."""
        nms = nms or self.nms
        boxes, scores = decode_outputs(outputs, self.record.decode, len(self.names), self.record.imgsz,
                                       min_score=nms.conf)
        results = []
        for i, info in enumerate(placements):
            if not self.record.decode.nms:  # one-to-one head: its top-k is the answer
                xyxy, score, class_id = select_topk(boxes[i], scores[i], conf=nms.conf, max_det=nms.max_det)
            else:
                xyxy, score, class_id = select_and_nms(boxes[i], scores[i], conf=nms.conf, iou=nms.iou,
                                                       max_det=nms.max_det, multi_label=nms.multi_label,
                                                       agnostic=nms.agnostic)
            xyxy = info.to_original(xyxy)
            inside = (xyxy[:, 2] > xyxy[:, 0]) & (xyxy[:, 3] > xyxy[:, 1])  # a box wholly off the image clips to 0
            results.append(Detections(xyxy[inside], score[inside], class_id[inside], self.names, info.source_hw))
        return results

    def detect_rgb(self, images_rgb: Sequence[np.ndarray], nms: NmsOptions | None = None,
                   interpolation: str | None = None) -> list[Detections]:
        """Detect on decoded RGB uint8 images (H, W, 3), as `load` returns them."""
        if not images_rgb:
            return []
        tensor, placements = self.preprocess(images_rgb, interpolation)
        return self.postprocess(self.infer(tensor), placements, nms)

    def load_for_model(self, image: ImageSource, color: ColorOrder = "BGR") -> tuple[np.ndarray, Reduction]:
        """Like `load`, but a JPEG at least twice the model size is decoded at reduced scale (libjpeg DCT
        scaling); returns (RGB pixels, Reduction that maps their boxes back to the full image)."""
        return load_for_model(image, self.record.imgsz, color=color, exif=self.exif, max_pixels=self.max_pixels)

    def detect_batch(self, images: Iterable[ImageSource], color: ColorOrder = "BGR",
                     nms: NmsOptions | None = None) -> list[Detections]:
        """Detect on several images of any sizes (each letterboxed, never stretched); boxes in full-image pixels."""
        loaded = [self.load_for_model(image, color) for image in images]
        results = self.detect_rgb([pixels for pixels, _ in loaded], nms)
        return [found if reduction.factor == 1 else
                replace(found, xyxy=reduction.to_original(found.xyxy), image_hw=reduction.original_hw)
                for found, (_, reduction) in zip(results, loaded)]

    def detect(self, image: ImageSource, color: ColorOrder = "BGR", nms: NmsOptions | None = None) -> Detections:
        """Detect on one image: a path, encoded bytes, a numpy array (BGR unless color='RGB') or a PIL image."""
        return self.detect_batch([image], color, nms)[0]

    __call__ = detect

    def describe(self) -> dict[str, Any]:
        """A summary of the opened artifact for logs and reports."""
        return {"artifact": str(self.path), "backend": self.backend.name, "target": self.record.target,
                "precision": self.record.precision, "imgsz": list(self.imgsz), "names": list(self.names),
                "input": self._input.to_dict(), "origin": self.record.origin}


