"""`edgeport analyze` in-process: lines per source, summary, resumability, errors per source, batching."""

from __future__ import annotations

import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from daemon_support import write_video
from edgeport.analyze import AnalyzeOptions, analyze, open_source
from edgeport.cli import main


@pytest.fixture(scope="module")
def sources(tmp_path_factory, val_images):
    """A 24-frame video, a folder of 6 images, a list of 4 images (one of them missing)."""
    work = tmp_path_factory.mktemp("analyze_sources")
    video = write_video(work / "cam.mp4", val_images[:12], repeat=2)
    folder = work / "shots"
    folder.mkdir()
    for image in val_images[12:18]:
        (folder / image.name).write_bytes(image.read_bytes())
    listing = work / "picked.txt"
    listing.write_text("".join(f"{p}\n" for p in val_images[18:21]) + "missing.jpg\n")
    return [video, folder, listing]


def _lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_one_jsonl_per_source_and_summary_counts(tmp_path, sources, onnx_artifact):
    rows = analyze(sources, tmp_path, AnalyzeOptions(str(onnx_artifact), progress=False))
    video = _lines(tmp_path / "cam.jsonl")
    assert [r["frame"] for r in video] == list(range(24))
    assert video[3]["t"] == pytest.approx(0.3) and video[0]["image_hw"] == [360, 480]
    assert sum(len(r["detections"]) for r in video) > 0
    shots, picked = _lines(tmp_path / "shots.jsonl"), _lines(tmp_path / "picked.jsonl")
    assert len(shots) == 6 and all(r["t"] is None and r["image"].endswith(".jpg") for r in shots)
    assert [("error" in r) for r in picked] == [False, False, False, True]
    assert "missing.jpg" in picked[3]["error"]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert [s["status"] for s in summary["sources"]] == ["done"] * 3
    cam = summary["sources"][0]
    assert cam["frames"] == 24 and cam["video_fps"] == 10.0 and cam["frames_per_second"] > 0
    counted = {}
    for record in video:
        for d in record["detections"]:
            counted[d["class_name"]] = counted.get(d["class_name"], 0) + 1
    assert cam["counts"] == counted
    assert summary["sources"][2]["frame_errors"] == 1
    assert [r.status for r in rows] == ["done"] * 3


def test_unreadable_source_fails_alone_with_exit_1(tmp_path, sources, onnx_artifact, capsys):
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video at all" * 100)
    out = tmp_path / "out"
    code = main(["analyze", str(tmp_path / "nowhere.mp4"), str(broken), str(sources[0]), "--model",
                 str(onnx_artifact), "--out", str(out), "--quiet"])
    assert code == 1
    err = capsys.readouterr().err
    assert "nowhere.mp4: not found" in err and "broken.mp4: cannot be opened as a video" in err
    summary = json.loads((out / "summary.json").read_text())
    assert [s["status"] for s in summary["sources"]] == ["failed", "failed", "done"]
    assert len(_lines(out / "cam.jsonl")) == 24


def test_finished_source_skipped_and_partial_one_redone(tmp_path, sources, onnx_artifact):
    options = AnalyzeOptions(str(onnx_artifact), progress=False)
    analyze(sources[:2], tmp_path, options)
    first = (tmp_path / "cam.jsonl").read_text()
    done_mtime = (tmp_path / "cam.jsonl").stat().st_mtime_ns
    shots = (tmp_path / "shots.jsonl").read_text()
    # an interrupted run: shots has only a partial temp file, cut mid-line
    (tmp_path / "shots.jsonl").unlink()
    (tmp_path / "shots.jsonl.part").write_text(shots[: len(shots) // 3])
    rows = analyze(sources[:2], tmp_path, options)
    assert [r.status for r in rows] == ["already done", "done"]
    assert (tmp_path / "cam.jsonl").stat().st_mtime_ns == done_mtime and (tmp_path / "cam.jsonl").read_text() == first
    assert (tmp_path / "shots.jsonl").read_text() == shots
    assert not (tmp_path / "shots.jsonl.part").exists()


def test_batched_and_overlapped_lines_equal_per_frame(tmp_path, sources, onnx_artifact):
    analyze(sources, tmp_path / "one", AnalyzeOptions(str(onnx_artifact), batch=1, overlap=False, progress=False))
    analyze(sources, tmp_path / "many", AnalyzeOptions(str(onnx_artifact), batch=16, progress=False))
    for name in ("cam", "shots", "picked"):
        assert (tmp_path / "one" / f"{name}.jsonl").read_text() == (tmp_path / "many" / f"{name}.jsonl").read_text()


def test_frame_ranges_decode_the_frames_of_a_whole_read(sources):
    video = open_source(sources[0], "cam")
    whole = [f.rgb for f in video.read()]
    ranged = [f.rgb for start, stop in video.ranges(5) for f in video.read(start, stop)]
    assert len(ranged) == len(whole) == 24
    assert all(np.array_equal(a, b) for a, b in zip(whole, ranged))
    assert video.ranges(5)[-1] == (20, None)  # the last range reads to the end, whatever the container says


def test_save_video_draws_every_frame(tmp_path, sources, onnx_artifact):
    analyze(sources[:1], tmp_path, AnalyzeOptions(str(onnx_artifact), save_video=True, progress=False))
    capture = cv2.VideoCapture(str(tmp_path / "cam.annotated.mp4"))
    frames = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
    capture.release()
    assert frames == 24


def test_runtime_and_daemon_never_import_ray():
    code = ("import sys, edgeport.runtime, edgeport.daemon, edgeport.analyze, edgeport.cli; "
            "print([m for m in ('ray', 'pyarrow', 'pandas') if m in sys.modules])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
