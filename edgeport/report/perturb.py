"""Perturbed copies of the val images for the robustness section, written once per report.

Each set is a YOLO-format folder (images, the original labels, data.yaml) that every artifact
is evaluated on with `edgeport.evaluate`, so a set can be re-checked with `edgeport evaluate`.
Images are taken in display orientation (EXIF applied) and written without EXIF.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import cv2
import numpy as np
import yaml

from edgeport.evaluate.dataset import Dataset, label_path
from edgeport.progress import track
from edgeport.runtime.image_io import load_image

NOISE_SIGMA = 12.0  # pixel levels of 255
NOISE_SEED = 20240
BLUR_SIGMA = 2.0  # pixels of the original image
JPEG_QUALITY = 30
BRIGHTNESS = 0.4
FGSM_EPSILON = 2  # pixel levels of 255 (L-infinity)
FGSM_CONF = 0.25


@dataclass(frozen=True)
class Perturbation:
    """One perturbation of the val images; `seed` is None for a deterministic one."""

    name: str
    description: str
    seed: int | None = None

    def to_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "seed": self.seed}


def _noise(rgb: np.ndarray, index: int) -> np.ndarray:
    rng = np.random.default_rng([NOISE_SEED, index])  # one stream per image: independent of the image order
    return np.clip(rgb + rng.normal(0.0, NOISE_SIGMA, rgb.shape), 0, 255).astype(np.uint8)


def _blur(rgb: np.ndarray, index: int) -> np.ndarray:
    return cv2.GaussianBlur(rgb, (0, 0), BLUR_SIGMA)


def _jpeg(rgb: np.ndarray, index: int) -> np.ndarray:
    ok, encoded = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    return cv2.cvtColor(cv2.imdecode(encoded, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def _brightness(factor: float) -> Callable[[np.ndarray, int], np.ndarray]:
    def apply(rgb: np.ndarray, index: int) -> np.ndarray:
        return np.clip(np.rint(rgb.astype(np.float32) * factor), 0, 255).astype(np.uint8)
    return apply


PIXEL_PERTURBATIONS: dict[str, tuple[Perturbation, Callable[[np.ndarray, int], np.ndarray]]] = {
    "noise": (Perturbation("noise", f"Gaussian noise, sigma {NOISE_SIGMA:g}/255 per channel", NOISE_SEED), _noise),
    "blur": (Perturbation("blur", f"Gaussian blur, sigma {BLUR_SIGMA:g} px"), _blur),
    "jpeg30": (Perturbation("jpeg30", f"JPEG re-encoding at quality {JPEG_QUALITY}"), _jpeg),
    "bright+40": (Perturbation("bright+40", f"brightness +{BRIGHTNESS:.0%} (pixels x {1 + BRIGHTNESS:g})"),
                  _brightness(1 + BRIGHTNESS)),
    "bright-40": (Perturbation("bright-40", f"brightness -{BRIGHTNESS:.0%} (pixels x {1 - BRIGHTNESS:g})"),
                  _brightness(1 - BRIGHTNESS)),
}
FGSM = Perturbation("fgsm", f"one-step FGSM (L-inf {FGSM_EPSILON}/255) against the float model's own detections "
                    f"(score >= {FGSM_CONF}), gradients from the source .pt in torch, replayed on every artifact")


def fgsm_images(model_pt: Path, images: Sequence[np.ndarray], imgsz: tuple[int, int],
                epsilon: int = FGSM_EPSILON, conf: float = FGSM_CONF) -> Iterator[np.ndarray]:
    """Yield each RGB image moved by `epsilon` levels against the sign of the gradient of the float
    model's summed top class scores over its detections (score >= conf): a vanishing attack.

    The gradient is taken through a differentiable copy of the runtime's letterbox, with respect to
    the original pixels, so the same image file can be replayed on every artifact. Needs torch and
    ultralytics (the convert extra); raises MissingDependencyError otherwise.
    """
    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    import torch
    import torch.nn.functional as F
    from ultralytics import YOLO

    from edgeport.runtime.preprocess import letterbox

    model = YOLO(str(model_pt)).model.float().eval()
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for rgb in images:
        _, info = letterbox(rgb, imgsz)
        height, width = rgb.shape[:2]
        new_h, new_w = round(height * info.scale_y), round(width * info.scale_x)
        x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1)[None].float().div(255).requires_grad_(True)
        resized = x
        if (new_h, new_w) != (height, width):
            shrink = new_h < height
            resized = F.interpolate(x, size=(new_h, new_w), mode="area" if shrink else "bilinear",
                                    **({} if shrink else {"align_corners": False}))
        pad = (info.pad_x, imgsz[1] - new_w - info.pad_x, info.pad_y, imgsz[0] - new_h - info.pad_y)
        canvas = F.pad(resized, pad, value=114 / 255)
        out = model(canvas)
        out = out[0] if isinstance(out, (list, tuple)) else out
        best = out[0, 4:, :].max(dim=0).values  # top class score per anchor
        mask = best >= conf
        loss = best[mask].sum() if bool(mask.any()) else best.max()
        loss.backward()
        step = np.sign(x.grad[0].permute(1, 2, 0).numpy()) * epsilon
        yield np.clip(rgb.astype(np.int16) - step, 0, 255).astype(np.uint8)


def _fingerprint(dataset: Dataset, extra: dict) -> str:
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for path in dataset.images:
        stat = path.stat()
        digest.update(f"{path}|{stat.st_size}|{stat.st_mtime_ns}".encode())
    return digest.hexdigest()


def _write_set(out: Path, dataset: Dataset, perturbed: Iterator[np.ndarray], fingerprint: str) -> Path:
    if out.exists():
        shutil.rmtree(out)
    (out / "images").mkdir(parents=True)
    (out / "labels").mkdir()
    for i, (rgb, source) in enumerate(zip(perturbed, dataset.images)):  # perturbed first: its progress ends
        stem = f"{i:05d}_{source.stem}"  # unique even when two folders hold the same file name
        ok, encoded = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 1])
        (out / "images" / f"{stem}.png").write_bytes(encoded.tobytes())
        labels = label_path(source)
        (out / "labels" / f"{stem}.txt").write_text(labels.read_text() if labels.is_file() else "")
    (out / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "images", "names": list(dataset.names)}))
    (out / "manifest.json").write_text(json.dumps({"fingerprint": fingerprint}))
    return out / "data.yaml"


def perturbed_set(perturbation: Perturbation, dataset: Dataset, cache: Path, *, model_pt: Path | None = None,
                  imgsz: tuple[int, int] = (320, 320), progress: bool = True) -> tuple[Path, bool]:
    """Return (DATA.yaml of the perturbed copy of `dataset`, whether it came from the cache).

    The set lives in cache/<name>/ and is reused while the images, the parameters and (FGSM)
    the model are unchanged.
    """
    params = perturbation.to_dict()
    if perturbation.name == FGSM.name:
        from edgeport.artifact import sha256_file

        params.update(model=sha256_file(model_pt), imgsz=list(imgsz))
    fingerprint = _fingerprint(dataset, params)
    out = cache / perturbation.name
    manifest = out / "manifest.json"
    if manifest.is_file() and json.loads(manifest.read_text()).get("fingerprint") == fingerprint:
        return out / "data.yaml", True
    originals = (load_image(path, color="BGR", exif=True) for path in
                 track(dataset.images, len(dataset.images), f"perturb {perturbation.name}", enabled=progress))
    if perturbation.name == FGSM.name:
        perturbed = fgsm_images(model_pt, originals, imgsz)
    else:
        apply = PIXEL_PERTURBATIONS[perturbation.name][1]
        perturbed = (apply(rgb, i) for i, rgb in enumerate(originals))
    return _write_set(out, dataset, perturbed, fingerprint), False
