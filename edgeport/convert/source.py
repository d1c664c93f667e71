"""`SourceModel`: an Ultralytics detector loaded once, its family and head kind, and the one graph walker.

Every target takes its torch graph from here: `raw_head` (per-level logits, the cut before the decode that
integer models need) or `decoded` (normalized xyxy boxes and sigmoid scores, the float ONNX graph).
"""

from __future__ import annotations

import re
from functools import lru_cache
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgeport.errors import UnsupportedModelError

# head kinds: "dfl" (one-to-many, DFL boxes, NMS), "one2one-dfl" (YOLOv10: one-to-one with DFL, top-k),
# "one2one" (YOLO26: one-to-one, no DFL (reg_max 1), top-k)
HEAD_KINDS = ("dfl", "one2one-dfl", "one2one")
ATTENTION_BLOCKS = ("C2PSA", "PSA", "A2C2f", "AAttn", "Attention", "ABlock")


def family_of(yaml_file: str, head_name: str) -> str:
    """The Ultralytics family of a model ('yolov8', 'yolo11', 'yolo26', ...) from its YAML name; the
    head class name where the YAML name says nothing."""
    match = re.search(r"yolo(v?\d+)", Path(yaml_file or "").stem.lower())
    if match:
        return f"yolo{match.group(1)}"
    return "yolov10" if head_name == "v10Detect" else "unknown"


def walk_backbone(detection_model, x) -> list:
    """Run every layer but the head (Ultralytics' `f`/`save` routing); return the head's input features."""
    layers = detection_model.model
    saved: list = []
    for layer in layers[:-1]:
        if layer.f != -1:
            x = saved[layer.f] if isinstance(layer.f, int) else [x if j == -1 else saved[j] for j in layer.f]
        x = layer(x)
        saved.append(x if layer.i in detection_model.save else None)
    return [x if j == -1 else saved[j] for j in layers[-1].f]


def head_branch(head) -> tuple[Any, Any]:
    """(box convolutions, class convolutions) of the branch the artifact runs: one-to-one when the
    head has it, else one-to-many."""
    if getattr(head, "one2one_cv2", None) is not None:
        return head.one2one_cv2, head.one2one_cv3
    return head.cv2, head.cv3


@dataclass
class SourceModel:
    """An Ultralytics detection model, fused, with what every target needs to know about it."""

    path: Path
    net: Any  # the fused ultralytics DetectionModel (float32, eval)
    names: tuple[str, ...]
    imgsz: int
    family: str
    head_kind: str
    reg_max: int
    strides: tuple[int, ...]
    attention: bool

    @property
    def one_to_one(self) -> bool:
        """True for NMS-free heads: the runtime takes the top-k, never runs NMS."""
        return self.head_kind != "dfl"

    @property
    def head(self):
        return self.net.model[-1]

    def describe(self) -> dict[str, Any]:
        return {"family": self.family, "head": self.head_kind, "reg_max": self.reg_max,
                "strides": list(self.strides), "attention": self.attention, "imgsz": self.imgsz}

    def raw_head(self, layout: str = "NHWC"):
        """torch module: image (layout) -> per level (box logits (1, h*w, 4*reg_max), class logits (1, h*w, nc))."""
        return _modules()[0](self, layout).eval()

    def decoded(self):
        """torch module: NCHW image -> (boxes (1, N, 4) xyxy normalized to 0..1, scores (1, N, nc) sigmoid)."""
        return _modules()[1](self).eval()

    def reference(self, tensor_nchw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Float torch outputs of `decoded` on a (B, 3, H, W) float32 batch: (boxes, scores) numpy."""
        import torch

        module = self.decoded()
        with torch.no_grad():
            boxes, scores = module(torch.from_numpy(np.ascontiguousarray(tensor_nchw)))
        return boxes.numpy(), scores.numpy()


@lru_cache(maxsize=1)
def _modules():
    """The torch modules of the walker (defined on first use: torch is imported only then)."""
    import torch

    class RawHead(torch.nn.Module):
        def __init__(self, source: SourceModel, layout: str) -> None:
            super().__init__()
            self.net, self.layout = source.net, layout
            self.box, self.cls = head_branch(source.head)

        def forward(self, image):
            x = image.permute(0, 3, 1, 2) if self.layout == "NHWC" else image
            outputs = []
            for level, feat in enumerate(walk_backbone(self.net, x)):
                box, cls = self.box[level](feat), self.cls[level](feat)
                outputs.append(box.permute(0, 2, 3, 1).reshape(box.shape[0], -1, box.shape[1]))
                outputs.append(cls.permute(0, 2, 3, 1).reshape(cls.shape[0], -1, cls.shape[1]))
            return tuple(outputs)

    class Decoded(torch.nn.Module):
        def __init__(self, source: SourceModel) -> None:
            super().__init__()
            self.net = source.net
            box, cls = head_branch(source.head)
            self.branch = {"box_head": box, "cls_head": cls}
            size = float(source.imgsz)
            if source.one_to_one:  # the one-to-one decode gives xyxy pixels
                matrix = np.eye(4, dtype=np.float32) / size
            else:  # xywh pixels -> xyxy normalized: one MatMul the quantizers handle well
                matrix = np.array([[1, 0, 1, 0], [0, 1, 0, 1], [-0.5, 0, 0.5, 0], [0, -0.5, 0, 0.5]],
                                  dtype=np.float32) / size
            self.register_buffer("matrix", torch.from_numpy(matrix))

        def forward(self, image):
            head = self.net.model[-1]
            decoded = head._inference(head.forward_head(walk_backbone(self.net, image), **self.branch))
            nc = decoded.shape[1] - 4
            anchors_last = decoded.transpose(1, 2)
            boxes, scores = anchors_last.split([4, nc], dim=2)
            return boxes @ self.matrix, scores

    return RawHead, Decoded


_LOADED: dict[tuple, SourceModel] = {}  # one load per file version and size in a process (--target all)


def load_source(path: str | Path, imgsz: int | None = None) -> SourceModel:
    """Load an Ultralytics .pt detector once (fused, float32, eval) and classify its head; a later call
    for the same unchanged file and size returns the same SourceModel.

    Raises UnsupportedModelError for a non-detection task or a head edgeport cannot decode, naming it.
    """
    path = Path(path)
    if path.suffix.lower() != ".pt":
        raise UnsupportedModelError(f"{path}: this target converts from the Ultralytics .pt (PyTorch) model")
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, imgsz)
    if key not in _LOADED:
        from edgeport.convert.ultralytics_env import load_ultralytics

        load_ultralytics()
        from ultralytics import YOLO

        yolo = YOLO(str(path))
        if yolo.task != "detect":
            raise UnsupportedModelError(f"{path}: task {yolo.task!r} is not supported; only detection models")
        if len(_LOADED) >= 4:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = source_from_model(yolo.model, path, imgsz)
    return _LOADED[key]


def source_from_model(model, path: Path, imgsz: int | None = None) -> SourceModel:
    """Classify an Ultralytics DetectionModel (fusing it in place); see `load_source`."""
    head = model.model[-1]
    if not hasattr(head, "cv2") or not hasattr(head, "reg_max") or not hasattr(head, "forward_head"):
        raise UnsupportedModelError(f"{path}: layer {len(model.model) - 1} is {type(head).__name__}, not an "
                                    "Ultralytics Detect head (YOLOv5u/v8/v9/v10/11/12/26)")
    one_to_one = getattr(head, "one2one_cv2", None) is not None
    if one_to_one:
        head.end2end = True  # the NMS-free branch: fusing drops the one-to-many one
    args = getattr(model, "args", {}) or {}
    size = int(imgsz or (args.get("imgsz", 640) if isinstance(args, dict) else 640))
    net = model.float().eval().fuse(verbose=False)
    head = net.model[-1]
    names = tuple(str(net.names[i]) for i in sorted(net.names))
    reg_max = int(head.reg_max)
    kind = "dfl" if not one_to_one else ("one2one" if reg_max == 1 else "one2one-dfl")
    if not one_to_one and reg_max == 1:
        raise UnsupportedModelError(f"{path}: one-to-many head without DFL (reg_max 1) is not supported")
    blocks = {type(m).__name__ for m in net.modules()}
    return SourceModel(path=path, net=net, names=names, imgsz=size,
                       family=family_of(str(net.yaml.get("yaml_file", "")), type(head).__name__),
                       head_kind=kind, reg_max=reg_max, strides=tuple(int(s) for s in head.stride.tolist()),
                       attention=bool(blocks & set(ATTENTION_BLOCKS)))
