"""The dynamic batcher over real models with a batch of 1, a fixed batch of 2 (padded) and a dynamic batch;
and the model's turns: first come, first served between the camera loop and HTTP."""

from __future__ import annotations

import shutil
import threading
import time

import numpy as np
import pytest

from edgeport.daemon.batcher import Batcher, DeadlineExceeded, Job, ModelTurns, QueueFull
from edgeport.runtime import Detector


@pytest.fixture(scope="module")
def batched_models(tmp_path_factory, sample_model, onnx_artifact):
    """{batch: model}: ours (batch 1), Ultralytics' export(batch=2) and export(dynamic=True) with H, W fixed."""
    import onnx

    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    folder = tmp_path_factory.mktemp("batched")
    local = folder / sample_model.name
    shutil.copy(sample_model, local)
    fixed = YOLO(str(local)).export(format="onnx", imgsz=320, batch=2, device="cpu", verbose=False)
    fixed = shutil.move(fixed, folder / "batch2.onnx")
    dynamic = onnx.load(YOLO(str(local)).export(format="onnx", imgsz=320, dynamic=True, device="cpu", verbose=False))
    dims = dynamic.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = 320, 320
    onnx.save(dynamic, str(folder / "dynamic.onnx"))
    return {1: onnx_artifact, 2: folder / "batch2.onnx", 0: folder / "dynamic.onnx"}


@pytest.mark.parametrize("batch,expected_invokes", [(1, [1, 1, 1, 1, 1]), (2, [2, 2, 2]), (0, [3, 2])])
def test_batcher_runs_every_model_kind_and_answers_each_request(batched_models, val_images, batch, expected_invokes):
    detector = Detector(batched_models[batch])
    assert detector.batch_size == batch
    invokes = []
    invoke = detector.backend.invoke
    detector.backend.invoke = lambda tensor: (invokes.append(len(tensor)), invoke(tensor))[1]
    images = [detector.load(path) for path in val_images[:5]]
    batcher = Batcher(detector.detect_canvases, max_batch=3, max_queue_delay_ms=300, max_queue=8)
    try:
        futures = [batcher.submit(Job(*detector.place(rgb), deadline=time.monotonic() + 60)) for rgb in images]
        results = [f.result(timeout=60) for f in futures]
    finally:
        batcher.stop()
    assert invokes == expected_invokes  # 3 then 2 queued uploads; a fixed batch of 2 pads the odd one
    for rgb, got in zip(images, results):
        expected = Detector(batched_models[batch]).detect_rgb([rgb])[0]
        assert len(got) == len(expected) and np.allclose(got.xyxy, expected.xyxy, atol=0.02)


def test_a_full_queue_and_a_passed_deadline_are_refused(batched_models, val_images):
    detector = Detector(batched_models[1])
    gate = threading.Event()
    batcher = Batcher(lambda c, p: (gate.wait(), detector.detect_canvases(c, p))[1], max_batch=1,
                      max_queue_delay_ms=0, max_queue=2)
    canvas, placement = detector.place(detector.load(val_images[0]))
    try:
        running = batcher.submit(Job(canvas, placement, time.monotonic() + 60))
        time.sleep(0.2)  # the batcher holds the first job (blocked on the gate)
        stale = batcher.submit(Job(canvas, placement, time.monotonic() + 0.05))
        batcher.submit(Job(canvas, placement, time.monotonic() + 60))
        with pytest.raises(QueueFull):
            batcher.submit(Job(canvas, placement, time.monotonic() + 60))
        time.sleep(0.2)
        gate.set()
        assert len(running.result(timeout=30)) >= 0
        with pytest.raises(DeadlineExceeded):
            stale.result(timeout=30)  # never invoked: its deadline passed while it waited
    finally:
        gate.set()
        batcher.stop()


def test_model_turns_are_first_come_first_served():
    turns = ModelTurns()
    order = []
    holding = threading.Event()

    def user(name: str, hold: float = 0.0) -> None:
        with turns.turn(name):
            holding.set()
            order.append(name)
            time.sleep(hold)

    first = threading.Thread(target=user, args=("first", 0.4))
    first.start()
    holding.wait(5)
    threads = []
    for name in ("camera", "http", "camera2"):  # each arrives while the model is held
        threads.append(threading.Thread(target=user, args=(name,)))
        threads[-1].start()
        time.sleep(0.05)
    assert turns.busy_since is not None
    for thread in [first, *threads]:
        thread.join(5)
    assert order == ["first", "camera", "http", "camera2"] and turns.busy_since is None
