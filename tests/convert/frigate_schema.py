"""The keys and values Frigate's documentation gives for `detectors:` and `model:` (its object detector
configuration reference, checked against Frigate 0.16/0.17), written out here to test edgeport's blocks."""

from __future__ import annotations

from typing import Any

MODEL_KEYS: dict[str, Any] = {
    "path": str, "labelmap_path": str, "width": int, "height": int, "labelmap": dict, "attributes_map": dict,
    "input_tensor": ("nchw", "nhwc", "hwnc", "hwcn"),
    "input_pixel_format": ("rgb", "bgr", "yuv"),
    "input_dtype": ("float", "float_denorm", "int"),
    "model_type": ("dfine", "rfdetr", "ssd", "yolox", "yolonas", "yolo-generic"),
}
# detector type -> (its own keys beyond type/model/model_path, the model types its docs list)
DETECTORS: dict[str, tuple[dict[str, Any], tuple[str, ...]]] = {
    "openvino": ({"device": str}, ("ssd", "yolonas", "yolo-generic", "yolox", "rfdetr", "dfine")),
    "onnx": ({"device": str}, ("yolonas", "yolo-generic", "yolox", "rfdetr", "dfine")),
    "edgetpu": ({"device": str}, ("ssd", "yolo-generic")),
    "rknn": ({"num_cores": range(0, 4)}, ("yolo-generic", "yolonas", "yolox")),  # Frigate: 0 <= num_cores <= 3
    "tensorrt": ({"device": int}, ("yolov7",)),  # Jetson only; engines from Frigate's own build script
}


def problems(config: dict[str, Any]) -> list[str]:
    """What in a `detectors:` + `model:` mapping Frigate's documented keys do not allow (empty: none)."""
    found = [f"unknown top-level key {k!r}" for k in config if k not in ("detectors", "model")]
    model = config.get("model", {})
    for key, value in model.items():
        rule = MODEL_KEYS.get(key)
        if rule is None:
            found.append(f"model.{key} is not a Frigate key")
        elif isinstance(rule, tuple) and value not in rule:
            found.append(f"model.{key}: {value!r} not one of {rule}")
        elif isinstance(rule, type) and not isinstance(value, rule):
            found.append(f"model.{key}: {value!r} is not {rule.__name__}")
    for name, detector in config.get("detectors", {}).items():
        kind = detector.get("type")
        if kind not in DETECTORS:
            found.append(f"detectors.{name}.type {kind!r} unknown")
            continue
        own, model_types = DETECTORS[kind]
        for key, value in detector.items():
            if key in ("type", "model", "model_path"):
                continue
            if key not in own:
                found.append(f"detectors.{name}.{key} is not a {kind} key")
            elif isinstance(own[key], range) and (not isinstance(value, int) or value not in own[key]):
                found.append(f"detectors.{name}.{key}: {value!r} is not an integer in {own[key]}")
            elif isinstance(own[key], type) and not isinstance(value, own[key]):
                found.append(f"detectors.{name}.{key}: {value!r} is not {own[key].__name__}")
        if model.get("model_type", "ssd") not in model_types:
            found.append(f"{kind} does not run model_type {model.get('model_type')!r}")
    return found
