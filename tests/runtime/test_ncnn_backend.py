"""The NCNN backend on small hand-written NCNN models run by the real engine: folder or .param file, the
input shape from the Input layer, threads and fp16 options reaching NCNN, refusals that say what to do,
and no heavy import. The converted YOLO models: tests/convert/test_ncnn.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgeport.errors import CorruptModelError, ModelNotFoundError
from edgeport.runtime.backends import backend_for
from edgeport.runtime.backends.ncnn import NcnnBackend

RELU = "7767517\n2 2\nInput in0 0 1 in0{shape}\nReLU relu0 1 1 in0 out0\n"


def relu_model(tmp_path: Path, shape: str = " 0=5 1=4 2=3", name: str = "relu_ncnn_model") -> Path:
    """A folder holding an NCNN ReLU over a (3, 4, 5) input (no weights: an empty .bin)."""
    folder = tmp_path / name
    folder.mkdir()
    (folder / "model.ncnn.param").write_text(RELU.format(shape=shape))
    (folder / "model.ncnn.bin").write_bytes(b"")
    return folder


def test_folder_and_param_file_open_with_the_ncnn_backend(tmp_path):
    folder = relu_model(tmp_path)
    assert backend_for(folder) is NcnnBackend and backend_for(folder / "model.ncnn.param") is NcnnBackend
    by_param = NcnnBackend(folder / "model.ncnn.param")
    assert by_param.path == folder  # the record lives beside the folder either way
    assert [(t.name, t.shape, t.dtype) for t in by_param.inputs] == [("in0", (1, 3, 4, 5), "float32")]
    assert [(t.name, t.shape) for t in by_param.outputs] == [("out0", (1, 3, 4, 5))]


def test_invoke_runs_every_image_of_a_batch_through_ncnn(tmp_path):
    backend = NcnnBackend(relu_model(tmp_path), threads=1, fp16=False)
    batch = np.random.default_rng(0).normal(size=(2, 3, 4, 5)).astype(np.float32)
    (out,) = backend.invoke(batch)
    assert out.shape == (2, 3, 4, 5) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.maximum(batch, 0))


def test_threads_and_fp16_reach_ncnn_and_fp16_follows_the_record(tmp_path):
    folder = relu_model(tmp_path)
    backend = NcnnBackend(folder, threads=3, fp16=False)
    options = backend._net.opt
    assert options.num_threads == 3 and not options.use_fp16_storage and not options.use_fp16_arithmetic
    assert NcnnBackend(folder).fp16  # no record: NCNN's own default (fp16 where the CPU has it)
    (tmp_path / "relu_ncnn_model.edgeport.json").write_text(json.dumps({"precision": "fp32"}))
    assert not NcnnBackend(folder).fp16  # an fp32 artifact runs in float32
    assert NcnnBackend(folder, fp16=True)._net.opt.use_fp16_storage
    from edgeport.runtime.options import RuntimeOptions

    assert RuntimeOptions(threads=3).backend_kwargs("ncnn") == {"threads": 3, "spin": False}


def test_input_layer_without_shape_is_refused_naming_the_converter(tmp_path):
    folder = relu_model(tmp_path, shape="")
    with pytest.raises(CorruptModelError, match="declares no shape.*edgeport convert --target ncnn"):
        NcnnBackend(folder)


def test_missing_bin_and_foreign_param_are_refused(tmp_path):
    folder = relu_model(tmp_path)
    (folder / "model.ncnn.bin").unlink()
    with pytest.raises(ModelNotFoundError, match="model.ncnn.bin not found"):
        NcnnBackend(folder)
    other = relu_model(tmp_path, name="other_ncnn_model")
    (other / "model.ncnn.param").write_text("not ncnn\n")
    with pytest.raises(CorruptModelError, match="not an NCNN param file"):
        NcnnBackend(other)
    broken = relu_model(tmp_path, name="broken_ncnn_model")
    (broken / "model.ncnn.param").write_text(RELU.format(shape=" 0=5 1=4 2=3").replace("ReLU", "NoSuchLayer"))
    with pytest.raises(CorruptModelError, match="cannot parse this param file") as caught:
        NcnnBackend(broken)
    assert "\n" not in str(caught.value)


def test_the_backend_imports_nothing_heavy_and_lets_openmp_workers_sleep(tmp_path):
    folder = relu_model(tmp_path)
    code = ("import sys, numpy as np\n"
            "from edgeport.runtime.backends.ncnn import NcnnBackend\n"
            f"NcnnBackend({str(folder)!r}, threads=1).invoke(np.ones((1, 3, 4, 5), np.float32))\n"
            "import os\n"
            "heavy = ('torch', 'tensorflow', 'ultralytics', 'coremltools', 'pnnx')\n"
            "print(sorted(m for m in heavy if m in sys.modules),"
            " os.environ.get('OMP_WAIT_POLICY'))")
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # this process may have set it
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).resolve().parents[2], env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[] PASSIVE"  # OpenMP workers sleep unless --spin (shared cores)
