"""The torch side of the CoreML target: the detector as CoreML and Vision want it.

`Body` (image -> raw per-level head logits) is what gets quantized; `VisionDecode` turns those
logits into Vision's `coordinates` (N, 4) normalized cx, cy, w, h and `confidence` (N, nc).
Runs inside the CoreML worker process (torch is imported before coremltools there); the model and its
graph walk come from edgeport.convert.source, as for every target.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from edgeport.convert.source import SourceModel, head_branch, load_source, walk_backbone
from edgeport.errors import UnsupportedModelError


class Body(torch.nn.Module):
    """NCHW float image 0..1 -> (box logits, class logits) per level, NCHW; traceable by torch.fx.

    The backbone is `walk_backbone`'s and the head branch `head_branch`'s (edgeport.convert.source):
    the same graph every other target converts."""

    def __init__(self, detection_model) -> None:
        super().__init__()
        self.net = detection_model
        self.box_convs, self.class_convs = head_branch(detection_model.model[-1])

    def forward(self, x):
        outputs = []
        for level, feat in enumerate(walk_backbone(self.net, x)):
            outputs.append(self.box_convs[level](feat))
            outputs.append(self.class_convs[level](feat))
        return tuple(outputs)


class VisionDecode(torch.nn.Module):
    """Per-level logits -> coordinates (N, 4) normalized xywh, confidence (N, nc) sigmoid scores.

    Box logits are a distribution over `reg_max` bins per side (DFL), or with reg_max 1 the side
    distances themselves. Everything is normalized before the arithmetic, so fp16 compute keeps
    about 0.15 px at 320.
    """

    def __init__(self, size: int, strides: list[int], reg_max: int) -> None:
        super().__init__()
        centres, scales = [], []
        for stride in strides:
            cells = size // stride
            ys, xs = np.meshgrid(np.arange(cells) + 0.5, np.arange(cells) + 0.5, indexing="ij")
            centres.append(np.stack([xs.ravel(), ys.ravel()]) * stride / size)
            scales.append(np.full(cells * cells, stride / size))
        self.register_buffer("centres", torch.tensor(np.concatenate(centres, 1), dtype=torch.float32))  # (2, N)
        self.register_buffer("scales", torch.tensor(np.concatenate(scales), dtype=torch.float32))  # (N,)
        self.register_buffer("bins", torch.arange(reg_max, dtype=torch.float32).view(1, reg_max, 1))
        self.reg_max = reg_max

    def forward(self, *levels):
        boxes = torch.cat([b.flatten(2) for b in levels[0::2]], 2)[0]  # (4 * reg_max, N)
        classes = torch.cat([c.flatten(2) for c in levels[1::2]], 2)[0]  # (nc, N)
        if self.reg_max == 1:  # no DFL (YOLO26): the head gives the distances themselves, in strides
            dist = boxes * self.scales  # (4, N) ltrb
        else:
            dist = (boxes.view(4, self.reg_max, -1).softmax(1) * self.bins).sum(1) * self.scales  # (4, N) ltrb
        left_top, right_bottom = dist[:2], dist[2:]
        centre = self.centres + (right_bottom - left_top) / 2
        size = left_top + right_bottom
        return torch.cat([centre, size], 0).transpose(0, 1), classes.sigmoid().transpose(0, 1)


class VisionDetector(torch.nn.Module):
    """Body then VisionDecode: what the mlpackage computes."""

    def __init__(self, body: torch.nn.Module, decode: VisionDecode) -> None:
        super().__init__()
        self.body = body
        self.decode = decode

    def forward(self, image):
        return self.decode(*self.body(image))


class BatchedOutputs(torch.nn.Module):
    """The same model with a batch axis on its outputs (1, N, 4) / (1, N, nc), for the ONNX proxy."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, image):
        coordinates, confidence = self.model(image)
        return coordinates.unsqueeze(0), confidence.unsqueeze(0)


def load_detector(path: Path, imgsz: int | None) -> tuple[SourceModel, Body, VisionDecode]:
    """The source model (`load_source`: fused, float32, eval), its `Body` and `VisionDecode`.

    Raises UnsupportedModelError for an image size the strides do not divide (or what load_source raises).
    """
    from ultralytics.nn.modules.block import C2f

    source = load_source(path, imgsz)
    if any(source.imgsz % s for s in source.strides):
        raise UnsupportedModelError(f"image size {source.imgsz} is not a multiple of the strides "
                                    f"{list(source.strides)}")
    for module in source.net.modules():
        if isinstance(module, C2f):  # chunk() cannot be traced by torch.fx; split() computes the same
            module.forward = module.forward_split
    return source, Body(source.net).eval(), VisionDecode(source.imgsz, list(source.strides), source.reg_max).eval()


def convs_in_order(module: torch.nn.Module, example: torch.Tensor) -> list[torch.nn.Conv2d]:
    """The Conv2d layers of `module` in the order a forward pass runs them."""
    order: list[torch.nn.Conv2d] = []
    hooks = [m.register_forward_hook(lambda m, i, o: order.append(m))
             for m in module.modules() if isinstance(m, torch.nn.Conv2d)]
    try:
        with torch.no_grad():
            module(example)
    finally:
        for hook in hooks:
            hook.remove()
    return order


def float_modules(body: Body) -> list[str]:
    """Module names W8A8 leaves in float (weights and activations): the detection head and the block
    that feeds its finest (stride 8) level.

    Measured on the trained samples (80 calibration images, val split, proxy mAP50-95 drop in points):
    everything quantized YOLOv8n 0.55, YOLO26n 4.73; the head's output convolutions in float YOLO26n
    3.09; the whole head YOLOv8n 0.50, YOLO26n 0.53; the head and its stride-8 input block YOLOv8n -0.86,
    YOLO26n 0.26. Turning each block's fake quantization off in turn (YOLO26n), the head held about
    70 % of the output error and the stride-8 block the next largest share."""
    names = {id(module): name for name, module in body.named_modules()}
    head = body.net.model[-1]
    return [names[id(body.net.model[head.f[0]])], names[id(head)]]


def quantizer_config(body: Body):
    """coremltools' LinearQuantizerConfig for W8A8: int8 per-channel symmetric weights, int8 activations
    (moving-average min/max observers, coremltools' default), observers on from step 0 and never frozen
    (no training here); `float_modules(body)` get no config (float)."""
    from coremltools.optimize.torch.quantization import LinearQuantizerConfig, ModuleLinearQuantizerConfig

    return LinearQuantizerConfig(
        global_config=ModuleLinearQuantizerConfig(quantization_scheme="symmetric", milestones=[0, 0, 1_000_000, 0]),
        module_name_configs={name: None for name in float_modules(body)})


def quantize_activations(body: Body, frames: np.ndarray, say) -> tuple[torch.nn.Module, torch.nn.Module]:
    """W8A8 with coremltools.optimize.torch (`quantizer_config`), activations calibrated on `frames`
    (N, H, W, 3 uint8 letterboxed RGB). Returns (fake-quant model, finalized model for conversion)."""
    from coremltools.optimize.torch.quantization import LinearQuantizer

    example = torch.zeros(1, 3, frames.shape[1], frames.shape[2])
    quantizer = LinearQuantizer(body, quantizer_config(body))
    prepared = quantizer.prepare(example_inputs=(example,), inplace=False)
    quantizer.step()
    prepared.eval()
    with torch.no_grad():
        for i, frame in enumerate(frames):
            prepared(torch.from_numpy(frame).permute(2, 0, 1).unsqueeze(0).float() / 255)
            if (i + 1) % 50 == 0:
                say(f"coreml: calibrated activations on {i + 1}/{len(frames)} images")
    prepared.apply(torch.ao.quantization.disable_observer)
    finalized = quantizer.finalize(prepared, inplace=False).eval()
    return prepared, finalized


def export_onnx(model: torch.nn.Module, path: Path, size: int) -> None:
    """Export (1, 3, size, size) -> coordinates (1, N, 4), confidence (1, N, nc) to ONNX opset 17."""
    import warnings

    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(BatchedOutputs(model).eval(), (torch.zeros(1, 3, size, size),), str(path), dynamo=False,
                          opset_version=17, input_names=["images"], output_names=["coordinates", "confidence"])
