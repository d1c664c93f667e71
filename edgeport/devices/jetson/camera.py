"""Jetson CSI cameras: the GStreamer pipeline (nvarguscamerasrc -> BGR appsink) OpenCV opens."""

from __future__ import annotations

from typing import Any

from edgeport.errors import ConfigError, DatasetError


def csi_pipeline(sensor_id: int = 0, width: int = 1920, height: int = 1080, fps: int = 30, flip: int = 0,
                 out_width: int | None = None, out_height: int | None = None) -> str:
    """The GStreamer pipeline string of a CSI sensor for cv2.VideoCapture(..., cv2.CAP_GSTREAMER).

    The sensor mode (width, height, fps) is captured in NVMM memory; nvvidconv flips
    (`flip` 0-7, nvvidconv's flip-method) and scales to out_width x out_height on the VIC, and
    only the final BGR conversion runs on the CPU. The appsink keeps the latest frame only.
    Raises ConfigError for out-of-range values.
    """
    values = {"sensor_id": sensor_id, "width": width, "height": height, "fps": fps}
    for key, value in values.items():
        if not isinstance(value, int) or value < (0 if key == "sensor_id" else 1):
            raise ConfigError(f"csi camera: {key} must be a {'non-negative' if key == 'sensor_id' else 'positive'} "
                              f"integer, got {value!r}")
    if not isinstance(flip, int) or not 0 <= flip <= 7:
        raise ConfigError(f"csi camera: flip must be 0-7 (nvvidconv flip-method), got {flip!r}")
    out_width, out_height = out_width or width, out_height or height
    if out_width < 1 or out_height < 1:
        raise ConfigError(f"csi camera: output size must be positive, got {out_width}x{out_height}")
    return (f"nvarguscamerasrc sensor-id={sensor_id} ! "
            f"video/x-raw(memory:NVMM), width=(int){width}, height=(int){height}, framerate=(fraction){fps}/1, "
            f"format=(string)NV12 ! nvvidconv flip-method={flip} ! "
            f"video/x-raw, width=(int){out_width}, height=(int){out_height}, format=(string)BGRx ! "
            "videoconvert ! video/x-raw, format=(string)BGR ! appsink drop=true max-buffers=1 sync=false")


def open_csi_camera(pipeline: str) -> Any:
    """cv2.VideoCapture of a pipeline; raises DatasetError when OpenCV cannot open it (no GStreamer
    support in this OpenCV build, or no camera / nvargus-daemon)."""
    import cv2

    capture = cv2.VideoCapture(pipeline, cv2.CAP_GSTREAMER)
    if not capture.isOpened():
        reason = ("is the camera connected and nvargus-daemon running (sudo systemctl restart nvargus-daemon)?"
                  if opencv_has_gstreamer(cv2.getBuildInformation()) else "this OpenCV build has no GStreamer support (pip's opencv-python-headless has "
                  "none; use JetPack's python3-opencv)")
        raise DatasetError(f"cannot open the CSI camera pipeline: {reason}")
    return capture


def opencv_has_gstreamer(build_information: str) -> bool:
    """Whether cv2.getBuildInformation() reports GStreamer support ("GStreamer: YES (1.20.3)")."""
    for line in build_information.splitlines():
        key, _, value = line.strip().partition(":")
        if key.strip() == "GStreamer":
            return value.strip().upper().startswith("YES")
    return False
