"""Jetson: TensorRT engine build on the device (`engine`), CSI camera pipeline (`camera`), service file.

Install notes per JetPack version: README.md in this folder.
"""
