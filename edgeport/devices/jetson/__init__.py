"""Jetson: TensorRT engine build on the device, CSI camera, service files (later issues)."""
