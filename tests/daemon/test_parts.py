"""The daemon's parts on their own: event tracker, snapshots, store-and-forward spool, metrics, sinks."""

from __future__ import annotations

import threading
import time

import numpy as np

from edgeport.daemon.config import Events
from edgeport.daemon.events import SnapshotStore, Tracker, iou_matrix
from edgeport.daemon.service import SinkWorker
from edgeport.daemon.spool import Spool
from edgeport.runtime.detections import Detections

NAMES = ("circle", "square", "triangle")


def _dets(*boxes) -> Detections:
    if not boxes:
        return Detections.empty(NAMES, (480, 640))
    xyxy = np.array([b[:4] for b in boxes], np.float32)
    return Detections(xyxy, np.full(len(boxes), 0.9, np.float32), np.array([b[4] for b in boxes], np.int32),
                      NAMES, (480, 640))


def test_iou_matrix():
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], np.float32)
    b = np.array([[0, 0, 10, 5], [100, 100, 110, 110]], np.float32)
    assert np.allclose(iou_matrix(a, b), [[0.5, 0.0], [0.0, 0.0]])
    assert iou_matrix(a, b[:0]).shape == (2, 0)


def test_tracker_appeared_after_min_hits_and_left_after_max_misses():
    tracker = Tracker("cam", Events(min_hits=2, max_misses=2))
    moving = [(10 + i, 10, 60 + i, 60, 0) for i in range(4)]
    assert tracker.update(_dets(moving[0]), 1) == []
    appeared = tracker.update(_dets(moving[1], (300, 300, 340, 340, 1)), 2)
    assert [(e.kind, e.class_name) for e in appeared] == [("appeared", "circle")]
    assert tracker.update(_dets(moving[2], (300, 300, 340, 340, 1)), 3)[0].class_name == "square"
    assert tracker.update(_dets(), 4) == []  # missed once
    assert tracker.update(_dets(), 5) == []  # missed twice: still within max_misses
    left = tracker.update(_dets(), 6)
    assert sorted((e.kind, e.class_name) for e in left) == [("left", "circle"), ("left", "square")]
    assert tracker.tracks == []


def test_tracker_keeps_classes_apart():
    tracker = Tracker("cam", Events(min_hits=1, max_misses=1))
    first = tracker.update(_dets((0, 0, 50, 50, 0)), 1)
    second = tracker.update(_dets((0, 0, 50, 50, 2)), 2)  # same place, other class: a new object
    assert first[0].track_id != second[0].track_id and second[0].class_name == "triangle"


def test_snapshots_keep_only_the_newest(tmp_path):
    store = SnapshotStore(tmp_path, max_files=3)
    tracker = Tracker("cam", Events(min_hits=1))
    image = np.zeros((48, 64, 3), np.uint8)
    paths = []
    for i in range(5):
        event = tracker.update(_dets((i * 10, 0, i * 10 + 5, 5, 0)), i)[0]
        paths.append(store.save(image, event))
        time.sleep(0.002)
    assert sorted(tmp_path.glob("*.jpg")) == sorted(paths[-3:])


def test_spool_is_fifo_durable_and_counts_overflow(tmp_path):
    spool = Spool(tmp_path / "q.sqlite", max_items=3)
    seqs = [spool.put("t", f"m{i}".encode()) for i in range(5)]
    assert seqs == [1, 2, 3, 4, 5]
    assert spool.overflow == 2 and len(spool) == 3
    assert spool.peek()[0] == 3
    spool.ack(3)
    spool.close()
    again = Spool(tmp_path / "q.sqlite", max_items=3)  # a restart keeps what was not delivered
    assert again.overflow == 2 and [again.peek()[2]] == [b"m3"]
    assert again.next_seq() == 6  # sequence numbers never go back


def test_spool_peek_waits_for_a_put(tmp_path):
    spool = Spool(tmp_path / "q.sqlite", max_items=10)
    threading.Timer(0.1, lambda: spool.put("t", b"late")).start()
    started = time.monotonic()
    assert spool.peek(timeout=5)[2] == b"late"
    assert time.monotonic() - started < 4


def test_a_slow_sink_drops_and_counts_instead_of_blocking():
    release = threading.Event()
    seen = []
    sink = SinkWorker("slow", lambda item: (release.wait(), seen.append(item)), maxsize=2)
    started = time.monotonic()
    accepted = [sink.offer(i) for i in range(10)]
    assert time.monotonic() - started < 0.5  # offer never waits
    assert accepted.count(False) >= 7 and sink.dropped == accepted.count(False)
    release.set()
    sink.close()
    assert seen == [i for i, ok in enumerate(accepted) if ok]


def test_a_failing_sink_keeps_running():
    seen = []

    def handle(item):
        if item == 1:
            raise RuntimeError("disk full")
        seen.append(item)

    sink = SinkWorker("flaky", handle, maxsize=10)
    for i in range(3):
        sink.offer(i)
    sink.close()
    assert seen == [0, 2] and sink.errors == 1
