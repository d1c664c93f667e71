"""Stand-in detectors of every Ultralytics family, built from Ultralytics' own YAMLs (no download).

Untrained weights are made non-degenerate on the bundled sample images: batch-norm statistics are
recalibrated on them and the score and box biases are set so each image yields a few detections with
area (or kept untrained as is, `stand_in=False`: many activations then collapse to near-constants).
The models detect nothing real; they exercise every layer and head the family has. Tests and
benchmarks build their family models here and nowhere else.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# family -> Ultralytics YAML of its nano (or tiny) detector
FAMILIES: dict[str, str] = {
    "yolov5u": "yolov5nu.yaml", "yolov8": "yolov8n.yaml", "yolov9": "yolov9t.yaml", "yolov10": "yolov10n.yaml",
    "yolo11": "yolo11n.yaml", "yolo12": "yolo12n.yaml", "yolo26": "yolo26n.yaml",
}
TARGET_HITS = 0.004  # share of anchors whose best score ends above 0.5


def yaml_of(family: str) -> str:
    """The Ultralytics YAML of a family key ("yolo26") or of a model name ("yolo26n", "yolov9t").

    Raises KeyError for a name that is neither.
    """
    if family in FAMILIES:
        return FAMILIES[family]
    if f"{family}.yaml" in FAMILIES.values():
        return f"{family}.yaml"
    raise KeyError(f"unknown family {family!r}; choose one of {', '.join(FAMILIES)} (or their YAML names)")


def sample_batch(imgsz: int, images: int = 16) -> np.ndarray:
    """(images, 3, imgsz, imgsz) float32 0..1: the bundled val images letterboxed by the runtime."""
    from edgeport import sample
    from edgeport.evaluate.dataset import load_dataset
    from edgeport.runtime.image_io import load_image
    from edgeport.runtime.preprocess import letterbox

    paths = load_dataset(sample.data_yaml()).images[:images]
    canvases = [letterbox(load_image(p, color="RGB"), (imgsz, imgsz))[0] for p in paths]
    return np.stack(canvases).transpose(0, 3, 1, 2).astype(np.float32) / 255


def _sample_batches(imgsz: int, images: int, batch: int = 8):
    """`sample_batch` cut into NCHW batches of `batch` images."""
    tensors = sample_batch(imgsz, images)
    return [tensors[i:i + batch] for i in range(0, len(tensors), batch)]


def _recalibrate_batchnorm(model, batches) -> None:
    """Replace every batch-norm's running statistics by the sample images' (cumulative average)."""
    import torch

    norms = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    for norm in norms:
        norm.reset_running_stats()
        norm.momentum = None
    model.train()
    with torch.no_grad():
        for batch in batches:
            model(torch.from_numpy(batch))
    model.eval()


def _branches(head):
    branches = [(head.cv2, head.cv3)]
    if getattr(head, "one2one_cv2", None) is not None:
        branches.append((head.one2one_cv2, head.one2one_cv3))
    return branches


def _set_head_biases(model, batches) -> None:
    """Shift the last class convolutions' biases so at least TARGET_HITS of the anchors, and one in each
    image, score above 0.5, and
    (no-DFL heads) the box biases so every distance is positive."""
    import torch

    from edgeport.convert.source import walk_backbone

    head = model.model[-1]
    with torch.no_grad():
        feats = [walk_backbone(model, torch.from_numpy(b)) for b in batches]
        for box_convs, cls_convs in _branches(head):
            per_image = [torch.cat([cls_convs[i](f[i]).amax(1).flatten(1) for i in range(len(f))], 1)
                         for f in feats]  # (images, anchors) best class logit
            best = torch.cat(per_image)
            # about TARGET_HITS of all anchors above 0.5, and at least one anchor in every image
            shift = -min(float(torch.quantile(best.flatten(), 1 - TARGET_HITS)), float(best.amax(1).min()))
            for level in range(len(cls_convs)):
                cls_convs[level][-1].bias += shift
            if head.reg_max == 1:
                low = min(float(box_convs[i](f[i]).min()) for f in feats for i in range(len(f)))
                for level in range(len(box_convs)):
                    box_convs[level][-1].bias += max(0.0, 0.3 - low)


def build_family_model(family: str, out: Path, imgsz: int = 160, images: int = 16, seed: int = 0,
                       stand_in: bool = True, head_biases: bool = True) -> Path:
    """Write out (an Ultralytics .pt) holding the family's nano detector for the sample's classes; return it.
    `family` is a key of FAMILIES or a YAML name ("yolo11n"); `stand_in` False keeps the untrained weights
    and statistics as they are (degenerate activations, for calibration tests); `head_biases` False keeps
    the batch-norm statistics but not the score and box bias shifts (scores stay far from 0.5, where a
    sigmoid magnifies float16 weight rounding most).

    Raises KeyError for an unknown family.
    """
    import torch

    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import __version__
    from ultralytics.nn.tasks import DetectionModel

    from edgeport import sample
    from edgeport.evaluate.dataset import load_dataset

    names = load_dataset(sample.data_yaml()).names
    torch.manual_seed(seed)
    model = DetectionModel(yaml_of(family), nc=len(names), verbose=False)
    model.names = dict(enumerate(names))
    model.args = {"imgsz": imgsz, "task": "detect"}
    if stand_in:
        batches = _sample_batches(imgsz, images)
        _recalibrate_batchnorm(model, batches)
        if head_biases:
            _set_head_biases(model, batches)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.float().eval(), "train_args": {"imgsz": imgsz, "task": "detect",
                                                            "data": str(sample.data_yaml())},
                "version": __version__, "epoch": -1}, out)
    return out
