"""POST /detect at load against the real daemon, batching off and on, in the two modes of Triton's perf_analyzer.

    python benchmarks/serve.py [--seconds 15] [--rounds 3] [--rate 0.5 ...] [--model M] [--memory] [--json ...]

Two daemons (batching off, on) run in their own processes (uvicorn on 127.0.0.1, one camera at 5 fps so
that the camera loop shares the model as in the field) on a dynamic-batch ONNX of the bundled model
(Ultralytics export(dynamic=True), height and width fixed). Each client sends the same 640x480 JPEG again
and again on one keep-alive connection; rounds alternate between the two daemons so that a shared host's
load falls on both alike.
  - concurrency mode (closed loop, 1, 8, 40 clients: a client sends when answered) -> throughput; next to
    each p99 the Little's-law mean N / X, which no server can beat with N clients at X answers per second;
  - request-rate mode (open loop, 40 clients at a fixed offered rate, each --rate a fraction of the
    closed-loop capacity without batching; latency counted from the scheduled send) -> latency.
Per row: p50, p99, throughput, 5xx count, and the CPU milliseconds per answer used by the daemon and by
this load generator (which shares the host's cores). Goals at 40 clients, ratios measured in this one run:
  - 0 responses 5xx;  - p99 <= 3x a single request (1 client, batching off, p50): judged in the open loop;
  - throughput with batching >= 1.5x without (closed loop).
With --memory: the peak RSS of a daemon process receiving 60 x 9.9 MB uploads at once (goal: under the
systemd unit's MemoryMax of 1 GiB).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from edgeport import sample  # noqa: E402
from daemon_support import DAEMON_PROCESS  # noqa: E402
from runtime_latency import frame_640x480  # noqa: E402

GOALS = {"errors_5xx_at_40": 0, "p99_over_single_max": 3.0, "batching_speedup_min": 1.5}
CLIENTS = (1, 8, 40)

def dynamic_batch_onnx(folder: Path) -> Path:
    """Ultralytics' ONNX export with a dynamic batch (export(dynamic=True)), height and width fixed at 320."""
    import onnx

    from edgeport.convert.ultralytics_env import load_ultralytics

    load_ultralytics()
    from ultralytics import YOLO

    local = folder / sample.model_path().name
    shutil.copy(sample.model_path(), local)
    path = Path(YOLO(str(local)).export(format="onnx", imgsz=320, dynamic=True, simplify=True, verbose=False))
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = 320, 320
    out = folder / "dynamic_batch.onnx"
    onnx.save(model, str(out))
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_daemon(model: Path, folder: Path, batching: bool, extra: str,
                 deadline_ms: int = 10_000, max_batch: int = 8) -> tuple[subprocess.Popen, int]:
    port = free_port()
    video = folder / "camera"
    video.mkdir(parents=True, exist_ok=True)
    for image in sorted((sample.data_yaml().parent / "images" / "val").glob("*.jpg"))[:10]:
        shutil.copy(image, video / image.name)
    config = (f"model: {model}\ncameras: [{{id: cam, source: {video}, loop: true, fps: 5}}]\n"
              f"state_dir: {folder / 'state'}\n{extra}"
              f"http: {{port: {port}, batching: {{enabled: {str(batching).lower()}, max_batch: {max_batch}, "
              f"max_queue_delay_ms: 5, deadline_ms: {deadline_ms}}}}}\n")
    child = subprocess.Popen([sys.executable, "-c", DAEMON_PROCESS, config, "--metrics"], stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE,
                             text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if child.stdout.readline().strip() != "ready":
        raise SystemExit("the daemon did not start")
    return child, port


def stop_daemon(child: subprocess.Popen) -> str:
    child.stdin.write("\n")
    child.stdin.flush()
    text = child.communicate(timeout=60)[0]
    return text


def load(port: int, jpeg: bytes, clients: int, seconds: float) -> dict:
    """`clients` closed-loop clients for `seconds` (after 1 s of warm-up): latency, throughput, statuses."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    warm_until = time.monotonic() + 1.0
    stop_at = warm_until + seconds

    def client():
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        while time.monotonic() < stop_at:
            t0 = time.monotonic()
            connection, status = post_detect(connection, port, jpeg)
            t1 = time.monotonic()
            if warm_until <= t1 <= stop_at:  # answers completed in the window (a long request is not lost)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append((t1 - t0) * 1000)
        connection.close()

    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "statuses": statuses, "seconds": seconds}


def post_detect(connection: http.client.HTTPConnection, port: int, jpeg: bytes):
    """POST one JPEG to /detect; (the connection to use next, HTTP status or 0 when the connection failed)."""
    try:
        connection.request("POST", "/detect", body=jpeg, headers={"Content-Type": "image/jpeg"})
        response = connection.getresponse()
        response.read()
        return connection, response.status
    except (OSError, http.client.HTTPException):
        connection.close()
        return http.client.HTTPConnection("127.0.0.1", port, timeout=60), 0


def load_open(port: int, jpeg: bytes, clients: int, rate: float, seconds: float) -> dict:
    """Open loop (perf_analyzer's request-rate mode): `clients` connections send at a fixed total `rate` (req/s),
    each on its own schedule; latency counts from the scheduled send, so a late answer delays nothing unseen
    (no coordinated omission). A client whose previous answer is late sends at once."""
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    start = time.monotonic() + 0.5
    warm_until, stop_at = start + 1.0, start + 1.0 + seconds
    period = clients / rate

    def client(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        due = start + index / rate
        while due < stop_at:
            time.sleep(max(0.0, due - time.monotonic()))
            connection, status = post_detect(connection, port, jpeg)
            done = time.monotonic()
            if warm_until <= due:
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
                    if status == 200:
                        latencies.append((done - due) * 1000)
            due += period
        connection.close()

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return {"latencies": latencies, "statuses": statuses, "seconds": seconds, "offered_rps": rate}


def summary(clients: int, batching: bool, runs: list[dict]) -> dict:
    """One row from the rounds of one (clients, batching) cell."""
    latencies = [x for run in runs for x in run["latencies"]]
    statuses: dict[int, int] = {}
    for run in runs:
        for status, n in run["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    seconds = sum(run["seconds"] for run in runs)
    answered = max(1, statuses.get(200, 0))
    return {"batching": batching, "clients": clients, "requests": sum(statuses.values()), "ok": statuses.get(200, 0),
            "errors_5xx": sum(n for s, n in statuses.items() if s >= 500), "failed_connections": statuses.get(0, 0),
            "statuses": {str(k): v for k, v in sorted(statuses.items())},
            "p50_ms": float(np.percentile(latencies, 50)) if latencies else float("nan"),
            "p99_ms": float(np.percentile(latencies, 99)) if latencies else float("nan"),
            "throughput_rps": statuses.get(200, 0) / seconds,
            "daemon_cpu_ms_per_request": 1000 * sum(r.get("daemon_cpu_s", 0) for r in runs) / answered,
            "client_cpu_ms_per_request": 1000 * sum(r.get("client_cpu_s", 0) for r in runs) / answered}


def big_jpeg(nbytes: int) -> bytes:
    """A noise JPEG of just under `nbytes` (noise hardly compresses: about 3 Mpixels for 10 MB)."""
    import cv2

    rng, side = np.random.default_rng(0), int((nbytes / 2.2) ** 0.5)
    while True:
        noise = rng.integers(0, 256, (side, side, 3), dtype=np.uint8)
        data = cv2.imencode(".jpg", noise, [cv2.IMWRITE_JPEG_QUALITY, 100])[1].tobytes()
        if 0.97 * nbytes <= len(data) <= nbytes:
            return data
        side = int(side * (0.985 * nbytes / len(data)) ** 0.5)


def upload_memory(model: Path, folder: Path, uploads: int = 60) -> dict:
    """Peak RSS (VmHWM) of a daemon process that receives `uploads` x 9.9 MB at once; clients honour Retry-After."""
    from concurrent.futures import ThreadPoolExecutor

    child, port = start_daemon(model, folder / "memory", False, "", deadline_ms=300_000)  # memory, not deadlines
    data = big_jpeg(9_900_000)

    def upload(_):
        for _ in range(200):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
            connection.request("POST", "/detect", body=data, headers={"Content-Type": "image/jpeg"})
            response = connection.getresponse()
            response.read()
            connection.close()
            if response.status != 503:
                return response.status
            time.sleep(float(response.getheader("Retry-After", "1")))
        return 503

    started = time.monotonic()
    try:
        with ThreadPoolExecutor(uploads) as pool:
            statuses = list(pool.map(upload, range(uploads)))
        with open(f"/proc/{child.pid}/status") as status:
            peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM")) / 1024
    finally:
        stop_daemon(child)
    return {"uploads": uploads, "upload_mb": len(data) / 1e6, "ok": statuses.count(200), "peak_rss_mb": peak,
            "seconds": time.monotonic() - started}


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system) a process has used so far."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(child: subprocess.Popen, work) -> dict:
    """work()'s run, with the CPU seconds the daemon and this load generator used meanwhile."""
    daemon0, client0 = cpu_seconds(child.pid), time.process_time()
    run = work()
    run["daemon_cpu_s"], run["client_cpu_s"] = cpu_seconds(child.pid) - daemon0, time.process_time() - client0
    return run


def run_rows(daemons: dict, jpeg: bytes, args) -> tuple[list[dict], list[dict]]:
    """Closed-loop rows (1, 8, 40 clients), then open-loop rows (40 clients at each --rate fraction of the
    closed-loop capacity without batching); every round alternates the two daemons."""
    closed: dict[tuple[int, bool], list[dict]] = {}
    for round_ in range(args.rounds):  # rounds alternate off/on so that the load of a shared host falls on both
        for clients in CLIENTS:
            for batching, (child, port) in daemons.items():
                print(f"round {round_ + 1}/{args.rounds}: batching {'on' if batching else 'off'}, "
                      f"{clients} clients (closed loop) ...", file=sys.stderr, flush=True)
                closed.setdefault((clients, batching), []).append(
                    measured(child, lambda: load(port, jpeg, clients, args.seconds / args.rounds)))
    rows = [summary(clients, batching, closed[(clients, batching)])
            for clients in CLIENTS for batching in (False, True)]
    capacity = max(0.1, next(r for r in rows if r["clients"] == CLIENTS[-1] and not r["batching"])["throughput_rps"])
    opened: dict[tuple[float, bool], list[dict]] = {}
    for round_ in range(args.rounds):
        for fraction in args.rate:
            for batching, (child, port) in daemons.items():
                print(f"round {round_ + 1}/{args.rounds}: batching {'on' if batching else 'off'}, {CLIENTS[-1]} "
                      f"clients at {fraction:.0%} of {capacity:.0f} req/s (open loop) ...", file=sys.stderr, flush=True)
                opened.setdefault((fraction, batching), []).append(measured(
                    child, lambda: load_open(port, jpeg, CLIENTS[-1], fraction * capacity, args.seconds / args.rounds)))
    rate_rows = [{**summary(CLIENTS[-1], batching, opened[(fraction, batching)]), "offered_rps": fraction * capacity,
                  "fraction": fraction} for fraction in args.rate for batching in (False, True)]
    return rows, rate_rows


def little_ms(clients: int, rps: float) -> float:
    """Little's law: the mean time in the system of `clients` closed-loop clients answered at `rps` per second."""
    return clients / rps * 1000 if rps else float("inf")


def report(rows: list[dict], rate_rows: list[dict], model: Path, args) -> dict:
    """Print both tables and the goals; return the checks."""
    def row(batching: bool, clients: int) -> dict:
        return next(r for r in rows if r["batching"] == batching and r["clients"] == clients)

    single = row(False, 1)["p50_ms"]
    on40, off40 = row(True, 40), row(False, 40)
    little = {b: little_ms(40, r["throughput_rps"]) for b, r in (("off", off40), ("on", on40))}
    rate = next((r for r in rate_rows if r["batching"] and r["fraction"] == args.rate[0]), None)
    checks = {"single_request_ms": single, "errors_5xx_at_40": {"off": off40["errors_5xx"], "on": on40["errors_5xx"]},
              "p99_over_single_at_40": {"off": off40["p99_ms"] / single, "on": on40["p99_ms"] / single},
              "littles_law_mean_ms_at_40": little,
              "p99_over_single_open_loop": {f"{r['fraction']:.2f} {'on' if r['batching'] else 'off'}":
                                            r["p99_ms"] / single for r in rate_rows},
              "batching_speedup_at_40": on40["throughput_rps"] / max(off40["throughput_rps"], 1e-9)}
    host = (f"{platform.machine()} {platform.system()}, {os.cpu_count()} CPUs (shared), "
            f"Python {platform.python_version()}")
    print(f"\nedgeport serve benchmark on {host}; model {Path(model).name}; {args.seconds:g} s per row; "
          f"load average {os.getloadavg()[0]:.1f}")
    print("concurrency mode (closed loop: each client sends its next request when answered) -> throughput")
    print(f"{'batching':<10}{'clients':>8}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>9}{'5xx':>6}  Little's law N/X ms"
          "  CPU ms/req daemon, load generator  statuses")
    for r in rows:
        print(f"{'on' if r['batching'] else 'off':<10}{r['clients']:>8}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
              f"{r['throughput_rps']:>9.1f}{r['errors_5xx']:>6}  {little_ms(r['clients'], r['throughput_rps']):>19.1f}"
              f"  {r['daemon_cpu_ms_per_request']:>13.1f} {r['client_cpu_ms_per_request']:>17.1f}  {r['statuses']}")
    print(f"request-rate mode (open loop: {CLIENTS[-1]} clients at a fixed offered rate; latency from the "
          "scheduled send) -> latency")
    print(f"{'batching':<10}{'offered':>9}{'p50 ms':>10}{'p99 ms':>10}{'req/s':>9}{'5xx':>6}  p99 / single")
    for r in rate_rows:
        print(f"{'on' if r['batching'] else 'off':<10}{r['offered_rps']:>9.1f}{r['p50_ms']:>10.1f}{r['p99_ms']:>10.1f}"
              f"{r['throughput_rps']:>9.1f}{r['errors_5xx']:>6}  {r['p99_ms'] / single:>11.1f}x")
    ok_5xx = on40["errors_5xx"] == 0
    ok_speed = checks["batching_speedup_at_40"] >= GOALS["batching_speedup_min"]
    print(f"\nat 40 clients, batching on: 5xx {on40['errors_5xx']} (goal 0): {'met' if ok_5xx else 'NOT met'}")
    print(f"closed loop: p99 {on40['p99_ms']:.0f} ms = {checks['p99_over_single_at_40']['on']:.1f}x a single request "
          f"({single:.1f} ms); Little's law puts the MEAN at 40 / {on40['throughput_rps']:.1f} req/s = "
          f"{little['on']:.0f} ms = {little['on'] / single:.1f}x whatever the server does (goal <= "
          f"{GOALS['p99_over_single_max']}x: not reachable in this mode)")
    if rate:
        ok_p99 = rate["p99_ms"] / single <= GOALS["p99_over_single_max"]
        print(f"open loop at {rate['fraction']:.0%} of capacity ({rate['offered_rps']:.0f} req/s offered by 40 "
              f"clients), batching on: p99 {rate['p99_ms']:.0f} ms = {rate['p99_ms'] / single:.1f}x a single request "
              f"(goal <= {GOALS['p99_over_single_max']}x): {'met' if ok_p99 else 'NOT met'}")
    print(f"throughput with batching {checks['batching_speedup_at_40']:.2f}x without (goal >= "
          f"{GOALS['batching_speedup_min']}x): {'met' if ok_speed else 'NOT met'}")
    checks["host"], checks["load_average"] = host, os.getloadavg()
    return checks


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None,
                        help="artifact (default: a dynamic-batch ONNX of the sample)")
    parser.add_argument("--seconds", type=float, default=15.0, help="measured seconds per row (over all rounds)")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of off/on per row")
    parser.add_argument("--rate", type=float, action="append", default=None,
                        help="open-loop offered rate as a fraction of the closed-loop capacity (default 0.5)")
    parser.add_argument("--memory", action="store_true",
                        help="also: peak RSS of the daemon receiving 60 x 9.9 MB uploads at once (goal < 1 GiB)")
    parser.add_argument("--threads", type=int, default=None, help="daemon interpreter threads (default: its own)")
    parser.add_argument("--max-batch", type=int, default=8, help="the batcher's max_batch (batching on)")
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "serve.json")
    args = parser.parse_args()
    args.rate = args.rate or [0.5]
    folder = Path(tempfile.mkdtemp(prefix="edgeport-serve-bench-"))
    model = args.model or dynamic_batch_onnx(folder)
    jpeg = frame_640x480()
    extra = f"threads: {args.threads}\n" if args.threads else ""
    daemons = {batching: start_daemon(model, folder / ("on" if batching else "off"), batching, extra,
                                      max_batch=args.max_batch) for batching in (False, True)}
    try:
        rows, rate_rows = run_rows(daemons, jpeg, args)
    finally:
        metrics = {batching: stop_daemon(child) for batching, (child, _) in daemons.items()}
    for batching, text in metrics.items():
        sizes = {line.split()[0]: float(line.split()[1]) for line in text.splitlines()
                 if line.startswith(("edgeport_http_batch_size_sum", "edgeport_http_batch_size_count"))}
        if sizes.get("edgeport_http_batch_size_count"):
            rows[-1 if batching else -2]["mean_batch"] = (sizes["edgeport_http_batch_size_sum"]
                                                          / sizes["edgeport_http_batch_size_count"])
    memory = upload_memory(model, folder) if args.memory else None
    shutil.rmtree(folder, ignore_errors=True)
    checks = report(rows, rate_rows, model, args)
    if memory:
        print(f"{memory['uploads']} x {memory['upload_mb']:.1f} MB uploads at once: {memory['ok']} answered 200, "
              f"daemon peak RSS {memory['peak_rss_mb']:.0f} MB (goal < 1024, the unit's MemoryMax): "
              f"{'met' if memory['peak_rss_mb'] < 1024 else 'NOT met'} ({memory['seconds']:.0f} s)")
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"model": str(model), "seconds": args.seconds, "goals": GOALS, "rows": rows,
                                     "rate_rows": rate_rows, "checks": checks, "memory": memory}, indent=2))
    print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
