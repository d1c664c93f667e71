"""Coral Edge TPU: op-by-op compatibility analysis, `edgetpu_compiler` wrapper, delegate loading.

Google's pycoral and edgetpu_compiler are not on PyPI; the runtime goes through the LiteRT
delegate API (`load_delegate("libedgetpu.so.1")`) and the compiler is called when on PATH.
"""
