"""analyze and report on a real two-node Ray cluster on loopback give the in-process results, even when the
worker node is lost mid-job."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from daemon_support import write_video
from edgeport.analyze import AnalyzeOptions, analyze
from ray_support import ROOT, cluster_env, ray_cluster, run_driver  # noqa: F401 (ray_cluster: a fixture)

REPORT_NUMBERS = ("artifact", "status", "images", "map50_95", "map50", "drop_map50_95", "drop_map50", "per_class",
                  "per_class_drop", "worst_class", "agreement", "score_shift", "pr_curve", "robustness")


@pytest.fixture(scope="module")
def sources(tmp_path_factory, val_images):
    """A 40-frame video, a folder of 10 images and a list of 5 (one missing): several blocks each."""
    work = tmp_path_factory.mktemp("cluster_sources")
    video = write_video(work / "cam.mp4", val_images[:20], repeat=2)
    folder = work / "shots"
    folder.mkdir()
    for image in val_images[20:30]:
        shutil.copy(image, folder / image.name)
    listing = work / "picked.txt"
    listing.write_text("".join(f"{p}\n" for p in val_images[30:34]) + "missing.jpg\n")
    return [video, folder, listing]


def _same_lines(a, b, names):
    for name in names:
        assert (a / f"{name}.jsonl").read_text() == (b / f"{name}.jsonl").read_text(), name


def test_analyze_on_two_nodes_writes_the_in_process_lines(tmp_path, ray_cluster, sources, onnx_artifact):
    analyze(sources, tmp_path / "local", AnalyzeOptions(str(onnx_artifact), batch=8, progress=False))
    done = run_driver(["analyze", *map(str, sources), "--model", str(onnx_artifact), "--out", str(tmp_path / "ray"),
                       "--batch", "8", "--block-batches", "1", "--ray", ray_cluster.address])
    assert done.returncode == 0, done.stderr[-3000:]
    _same_lines(tmp_path / "local", tmp_path / "ray", ("cam", "shots", "picked"))
    local, ray = (json.loads((tmp_path / d / "summary.json").read_text()) for d in ("local", "ray"))
    assert ray["ray"] == ray_cluster.address
    assert [s["counts"] for s in ray["sources"]] == [s["counts"] for s in local["sources"]]


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory, onnx_artifact, sample_model):
    """A folder with the float ONNX and its fp16 ONNX."""
    from edgeport.convert import ConvertOptions, convert

    work = tmp_path_factory.mktemp("cluster_report")
    shutil.copy(onnx_artifact, work / onnx_artifact.name)
    convert(sample_model, "onnx", ConvertOptions(out_dir=work, precision="fp16"))
    return work


def _numbers(path):
    rows = json.loads(path.read_text())["rows"]
    return [{**{k: row.get(k) for k in REPORT_NUMBERS}, "artifact": Path(row["artifact"]).name} for row in rows]


def test_report_as_ray_tasks_gives_the_in_process_numbers(tmp_path, ray_cluster, report_dir, sample_data):
    from edgeport.report import build_report

    local, ray, cache = tmp_path / "local", tmp_path / "ray", tmp_path / "perturbed"
    shutil.copytree(report_dir, local)
    shutil.copytree(report_dir, ray)
    build_report(local, sample_data, images=8, cache_dir=cache, latency_runs=3, progress=False,
                 say=lambda line: None)
    # `--ray` without a value joins the cluster of RAY_ADDRESS, as a driver under `ray job submit` does
    done = subprocess.run([sys.executable, "-m", "edgeport", "report", str(ray), "--data", str(sample_data),
                           "--images", "8", "--cache-dir", str(cache), "--ray"],
                          env={**cluster_env(), "RAY_ADDRESS": ray_cluster.address}, capture_output=True, text=True,
                          timeout=600, cwd=ROOT)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "evaluate (ray)" in done.stderr
    numbers = _numbers(ray / "report.json")
    assert numbers == _numbers(local / "report.json")
    assert len(numbers) == 2 and all(len(row["robustness"]) >= 5 for row in numbers)
    assert all(isinstance(v["map50_95"], float) for row in numbers for v in row["robustness"].values())


def test_worker_node_lost_mid_job_still_writes_the_same_lines(tmp_path, ray_cluster, val_images, onnx_artifact):
    ray_cluster.ensure_worker()
    video = write_video(tmp_path / "long.mp4", val_images[:40], repeat=2)  # 80 frames, 10 blocks of 8
    analyze([video], tmp_path / "local", AnalyzeOptions(str(onnx_artifact), batch=8, progress=False))
    log = (tmp_path / "driver.log").open("w")
    start = time.monotonic()
    driver = subprocess.Popen([sys.executable, "-m", "edgeport", "analyze", str(video), "--model", str(onnx_artifact),
                               "--out", str(tmp_path / "ray"), "--batch", "8", "--block-batches", "1", "--ray",
                               ray_cluster.address], env=cluster_env(), stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        while "analyze (ray): " not in (tmp_path / "driver.log").read_text():  # frames have come back
            assert driver.poll() is None, (tmp_path / "driver.log").read_text()[-3000:]
            assert time.monotonic() - start < 300, "no progress from the cluster in 300 s"
            time.sleep(0.2)
        killed_at = time.monotonic() - start
        ray_cluster.kill_worker()
        code = driver.wait(timeout=600)
    finally:
        if driver.poll() is None:
            driver.kill()
        log.close()
    took = time.monotonic() - start
    output = (tmp_path / "driver.log").read_text()
    print(f"\nworker node killed {killed_at:.1f} s into the job; the job finished after {took:.1f} s in all")
    assert code == 0, output[-3000:]
    assert "80/80" in output
    _same_lines(tmp_path / "local", tmp_path / "ray", ("long",))
    deadline = time.monotonic() + 60
    while ray_cluster.nodes() != 1:  # the cluster did lose the node
        assert time.monotonic() < deadline, "the killed node is still listed as active"
        time.sleep(1)
