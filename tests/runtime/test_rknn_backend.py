"""The board backend (rknn-toolkit-lite2's RKNNLite, hardware absent here): a stand-in RKNNLite whose inference()
returns rknn-toolkit2's simulator outputs for the same build, so everything around the NPU call runs for real."""

from __future__ import annotations

import numpy as np
import pytest

from edgeport.errors import BackendError, CorruptModelError, MetadataMissingError
from edgeport.runtime import Detector
from edgeport.runtime.backends.rknn_sim import RknnSimulatorBackend
from rknn_support import rknn_int8


@pytest.fixture(scope="module")
def artifact(tmp_path_factory):
    return rknn_int8(tmp_path_factory)


@pytest.fixture(scope="module")
def simulator(artifact):
    backend = RknnSimulatorBackend(artifact.path.with_suffix(".rknnsim"))
    yield backend
    backend.close()


class SimulatedRKNNLite:
    """RKNNLite's API (load_rknn, init_runtime(core_mask), inference(inputs, data_format), release) answered by the
    simulator; it records what the backend asked."""

    NPU_CORE_AUTO, NPU_CORE_0, NPU_CORE_1, NPU_CORE_2 = 0, 1, 2, 4
    NPU_CORE_0_1, NPU_CORE_0_1_2, NPU_CORE_ALL = 3, 7, 0xFFFF
    simulator: RknnSimulatorBackend | None = None
    load_code = 0
    drop_output = False
    calls: list = []

    def load_rknn(self, path):
        self.calls.append(("load_rknn", path))
        return self.load_code

    def init_runtime(self, core_mask=0):
        self.calls.append(("init_runtime", core_mask))
        return 0

    def inference(self, inputs, data_format="nhwc"):
        (frame,) = inputs
        self.calls.append(("inference", frame.shape, frame.dtype.name, data_format))
        outputs = self.simulator.invoke(frame)
        return outputs[:-1] if self.drop_output else outputs

    def release(self):
        self.calls.append(("release",))


@pytest.fixture
def lite(simulator):
    class Lite(SimulatedRKNNLite):
        pass

    Lite.simulator, Lite.calls = simulator, []
    return Lite


def test_board_backend_detects_as_the_simulator(artifact, lite, simulator, val_images):
    board = Detector(artifact.path, backend="rknn", backend_options={"runtime_class": lite, "core_mask": "0_1_2"})
    reference = Detector(artifact.path.with_suffix(".rknnsim"))
    reference.backend.close()
    reference.backend = simulator  # one simulator process for both (it starts on first use)
    images = val_images[:3]
    for image in images:
        got, want = board.detect(image), reference.detect(image)
        assert len(got) > 0 and np.array_equal(got.class_id, want.class_id)
        np.testing.assert_allclose(got.xyxy, want.xyxy, atol=1e-3)
    assert lite.calls[:2] == [("load_rknn", str(artifact.path)), ("init_runtime", lite.NPU_CORE_0_1_2)]
    assert lite.calls[2] == ("inference", (1, 320, 320, 3), "uint8", "nhwc")
    assert board.backend_name == "rknn" and board.record.target == "rknn"


def test_board_backend_runs_a_batch_image_by_image(artifact, lite, simulator):
    from edgeport.runtime.backends.rknn import RknnBackend

    backend = RknnBackend(artifact.path, runtime_class=lite)
    frames = np.random.default_rng(0).integers(0, 256, (2, 320, 320, 3), dtype=np.uint8)
    outputs = backend.invoke(frames)
    assert [o.shape for o in outputs] == [(2,) + spec.shape[1:] for spec in backend.outputs]
    np.testing.assert_array_equal(outputs[1][1:], simulator.invoke(frames[1:])[1])
    assert sum(1 for call in lite.calls if call[0] == "inference") == 2


def test_core_mask_default_auto_and_unknown_refused(artifact, lite):
    from edgeport.runtime.backends.rknn import RknnBackend

    RknnBackend(artifact.path, runtime_class=lite)
    assert ("init_runtime", lite.NPU_CORE_AUTO) in lite.calls
    with pytest.raises(BackendError, match="core mask '3' is not one of auto, 0, 1, 2"):
        RknnBackend(artifact.path, core_mask="3", runtime_class=lite)


def test_load_failure_and_wrong_output_count_are_errors(artifact, lite):
    from edgeport.runtime.backends.rknn import RknnBackend

    lite.load_code = -1
    with pytest.raises(CorruptModelError, match="RKNNLite cannot load"):
        RknnBackend(artifact.path, runtime_class=lite)
    lite.load_code, lite.drop_output = 0, True
    backend = RknnBackend(artifact.path, runtime_class=lite)
    with pytest.raises(BackendError, match="returned 5 outputs, the record names 6"):
        backend.invoke(np.zeros((1, 320, 320, 3), np.uint8))


def test_board_backend_needs_the_record(artifact, lite, tmp_path):
    from edgeport.runtime.backends.rknn import RknnBackend

    lone = tmp_path / artifact.path.name
    lone.write_bytes(artifact.path.read_bytes())
    with pytest.raises(MetadataMissingError, match="--target rknn"):
        RknnBackend(lone, runtime_class=lite)


def test_without_rknnlite_the_error_points_to_the_simulator(artifact):
    with pytest.raises(BackendError, match="rknn-toolkit-lite2"):
        Detector(artifact.path)
