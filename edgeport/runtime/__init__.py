"""The light runtime: numpy + opencv + one interpreter; never torch, tensorflow or ultralytics."""

from edgeport.runtime.detections import Detections
from edgeport.runtime.detector import Detector, NmsOptions
from edgeport.runtime.image_io import load_image
from edgeport.runtime.options import RuntimeOptions

__all__ = ["Detector", "Detections", "NmsOptions", "RuntimeOptions", "load_image"]
