"""Coral: Edge TPU compile wrapper, op-mapping report, delegate, udev (later issues)."""
