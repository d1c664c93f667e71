"""Device support packages: Jetson (TensorRT) and Coral (Edge TPU)."""
