"""`edgeport analyze` throughput: in-process (per-frame, batched, decode overlapped) and on Ray with 1 and 2
nodes on this machine, the overhead Ray adds, and one `ray job submit` of the same job.

    python benchmarks/analyze.py [--model M] [--frames 320] [--json benchmarks/results/analyze.json]

Every figure is frames per second over the whole command (opening the model, decoding, detecting,
writing). The Ray nodes are real `ray start` processes on loopback (127.0.0.2, 127.0.0.3), one CPU each,
so "1 node" and "2 nodes" share this machine's cores: the ratio says what Ray's scheduling costs or
gains here, not what a second machine would add. Every run's JSON lines are checked identical.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "tests" / "cluster")]

from daemon_support import free_port, write_video  # noqa: E402
from ray_support import RayCluster, cluster_env  # noqa: E402

from edgeport import sample  # noqa: E402
from edgeport.analyze import AnalyzeOptions, analyze  # noqa: E402

IN_PROCESS = {  # name: (batch, decode in a reader thread, interpreter threads)
    "per-frame": (1, False, None),
    "batched": (16, False, None),
    "batched + decode overlapped": (16, True, None),
    "batched + decode overlapped, 1 thread": (16, True, 1),
}


def in_process(model: Path, video: Path, work: Path) -> dict[str, dict]:
    results = {}
    for name, (batch, overlap, threads) in IN_PROCESS.items():
        out = work / f"local-{len(results)}"
        start = time.perf_counter()
        rows = analyze([video], out, AnalyzeOptions(str(model), batch=batch, overlap=overlap, threads=threads,
                                                   progress=False), say=lambda line: None)
        seconds = time.perf_counter() - start
        results[name] = {"seconds": round(seconds, 2), "fps": round(rows[0].frames / seconds, 2),
                         "lines": (out / f"{video.stem}.jsonl").read_text()}
        print(f"  in-process {name:<40} {results[name]['fps']:>7.2f} frames/s", flush=True)
    return results


def on_ray(command: list[str], out: Path, video: Path, env: dict) -> dict:
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=900, cwd=ROOT)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command[:4])}... failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    frames = len((out / f"{video.stem}.jsonl").read_text().splitlines())
    return {"seconds": round(seconds, 2), "fps": round(frames / seconds, 2),
            "lines": (out / f"{video.stem}.jsonl").read_text()}


def cluster_runs(model: Path, video: Path, work: Path) -> dict[str, dict]:
    cluster = RayCluster(Path(tempfile.mkdtemp(prefix="epray-", dir="/tmp")), dashboard_port=free_port())
    results = {}
    env = cluster_env()
    analyze_args = ["analyze", str(video), "--model", str(model), "--quiet"]
    try:
        cluster.start_head()
        cluster.wait_nodes(1)
        for nodes in (1, 2):
            if nodes == 2:
                cluster.start_worker()
            out = work / f"ray-{nodes}"
            results[f"ray, {nodes} node{'s' * (nodes > 1)}"] = on_ray(
                [sys.executable, "-m", "edgeport", *analyze_args, "--out", str(out), "--ray", cluster.address],
                out, video, env)
        out = work / "ray-job"
        results["ray job submit, 2 nodes"] = on_ray(
            [str(cluster.ray), "job", "submit", f"--address=http://127.0.0.1:{cluster.dashboard_port}", "--",
             "edgeport", *analyze_args, "--out", str(out), "--ray"], out, video, env)
    finally:
        cluster.stop()
    for name, result in results.items():
        print(f"  {name:<51} {result['fps']:>7.2f} frames/s ({result['seconds']:.1f} s)", flush=True)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, default=None, help="artifact (default: the sample as float ONNX)")
    parser.add_argument("--frames", type=int, default=320, help="frames of the test video (default 320)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "analyze.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgeport-bench-analyze-") as tmp:
        work = Path(tmp)
        model = args.model
        if model is None:
            from edgeport.convert import ConvertOptions, convert

            model = convert(sample.model_path(), "onnx", ConvertOptions(out_dir=work / "model")).path
        images = sorted((sample.data_yaml().parent / "images" / "val").glob("*.jpg"))
        repeat = -(-args.frames // len(images))
        video = write_video(work / "footage.mp4", images, size=(640, 480), fps=30.0, repeat=repeat)
        print(f"analyze benchmark: {model.name}, {video.name} ({len(images) * repeat} frames, 640x480), "
              f"{os.cpu_count()} CPUs", flush=True)
        local = in_process(model, video, work)
        ray = cluster_runs(model, video, work)
    reference = local["batched + decode overlapped"]["lines"]
    identical = all(r["lines"] == reference for r in [*local.values(), *ray.values()])
    one_thread = local["batched + decode overlapped, 1 thread"]
    summary = {
        "host": f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs", "model": model.name,
        "frames": len(images) * repeat, "frame_size": [640, 480], "identical_lines": identical,
        "in_process": {k: {"fps": v["fps"], "seconds": v["seconds"]} for k, v in local.items()},
        "ray": {k: {"fps": v["fps"], "seconds": v["seconds"]} for k, v in ray.items()},
        "ratios": {
            "batched / per-frame": round(local["batched"]["fps"] / local["per-frame"]["fps"], 3),
            "overlapped / batched": round(local["batched + decode overlapped"]["fps"] / local["batched"]["fps"], 3),
            "ray 2 nodes / ray 1 node": round(ray["ray, 2 nodes"]["fps"] / ray["ray, 1 node"]["fps"], 3),
            "ray 2 nodes / in-process": round(ray["ray, 2 nodes"]["fps"] / local["batched + decode overlapped"]["fps"],
                                              3),
        },
        # Ray's 1-node run against the in-process run that uses the same one interpreter thread
        "ray_overhead_seconds": round(ray["ray, 1 node"]["seconds"] - one_thread["seconds"], 2),
        "command": "python benchmarks/analyze.py " + " ".join(sys.argv[1:]),
    }
    print(json.dumps({k: summary[k] for k in ("ratios", "ray_overhead_seconds", "identical_lines")}, indent=2))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"wrote {args.json}")
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
