"""Detectors of the Ultralytics 8.4 families built from Ultralytics' own YAMLs (no download), saved
as .pt: untrained as is (many activations then collapse to (near-)constants), or with BatchNorm
statistics taken from the bundled sample's images so that their activations and outputs vary."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def sample_batch(size: int, count: int = 16) -> np.ndarray:
    """(count, 3, size, size) float32 0..1: the sample's val images letterboxed by the runtime."""
    from edgeport import sample
    from edgeport.runtime.image_io import load_image
    from edgeport.runtime.preprocess import letterbox

    images = sorted((sample.data_yaml().parent / "images" / "val").glob("*.jpg"))[:count]
    frames = [letterbox(load_image(p), (size, size))[0] for p in images]
    return np.stack(frames).transpose(0, 3, 1, 2).astype(np.float32) / 255


def build_family(name: str, out_dir: Path, bn_from_sample: bool = False, size: int = 320) -> Path:
    """Write out_dir/<name>.pt built from `name`.yaml (e.g. "yolo26n") with the sample's classes;
    return its path."""
    import torch
    import yaml

    from edgeport import sample
    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO
    from ultralytics.nn.tasks import DetectionModel

    torch.manual_seed(0)
    names = yaml.safe_load(sample.data_yaml().read_text())["names"]
    names = dict(enumerate(names)) if isinstance(names, list) else names
    yolo = YOLO(f"{name}.yaml")
    yolo.model = DetectionModel(f"{name}.yaml", nc=len(names), verbose=False)
    yolo.model.names = names
    if bn_from_sample:
        net = yolo.model
        for module in net.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.reset_running_stats()
                module.momentum = None  # a plain average over what it sees
        net.train()
        with torch.no_grad():
            net(torch.from_numpy(sample_batch(size)))
        net.eval()
    path = out_dir / f"{name}.pt"
    yolo.save(str(path))
    return path
