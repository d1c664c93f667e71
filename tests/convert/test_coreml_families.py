"""CoreML on the families Ultralytics 8.4 builds: attention blocks (YOLO11, YOLO12, YOLO26) convert
under numpy >= 2.4, and NMS-free one-to-one heads (YOLOv10, YOLO26) are what the package decodes."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

FOLD_INT_OF_SHAPE = """
import torch
from edgeport.convert.coreml_worker import _import_coremltools

class Flatten(torch.nn.Module):
    def forward(self, x):
        n = int(x.shape[2] * x.shape[3])  # traced as aten::Int of a 1-element constant, as in attention blocks
        return x.reshape(x.shape[0], x.shape[1], n)

ct = _import_coremltools()
traced = torch.jit.trace(Flatten(), torch.zeros(1, 3, 20, 20))
model = ct.convert(traced, inputs=[ct.TensorType(shape=(1, 3, 20, 20))], convert_to="mlprogram",
                   skip_model_load=True)
print(model.get_spec().description.output[0].type.multiArrayType.shape)
"""


def test_int_of_a_shape_product_converts_under_numpy_2_4():
    """coremltools 9.0's own `int` translation raises on this graph with numpy >= 2.4; the worker's does not."""
    assert tuple(int(v) for v in np.__version__.split(".")[:2]) >= (2, 4)  # the numpy that breaks coremltools 9.0
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    done = subprocess.run([sys.executable, "-c", FOLD_INT_OF_SHAPE], capture_output=True, text=True, timeout=300,
                          env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["[1,", "3,", "400]"]
