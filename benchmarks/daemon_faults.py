"""Robustness figures of the daemon, each measured in this one run:

    python benchmarks/daemon_faults.py [--json benchmarks/results/daemon_faults.json] [--runs 20]

  - reduced-scale JPEG decode: a 4032x3024 photo decoded in full vs at 1/2, 1/4, 1/8 for a 320 and a
    640 model (libjpeg DCT scaling), ms per decode and the ratio;
  - the spool's cost of synchronous=FULL against NORMAL: events stored per second (put) and
    delivered per second (put + ack), on the disk under --dir;
  - how long paho takes to go past its 65,535 message ids with QoS 0 publishes to a real mosquitto
    (what the id-reuse test in tests/daemon/test_mqtt_ids.py does before freezing the broker);
  - the peak RSS of a process that refuses the 100000x100000 PNG bomb (header check only).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))
sys.path.insert(0, str(ROOT / "tests" / "runtime"))

from edgeport import sample  # noqa: E402
from edgeport.runtime.image_io import decode_bytes, decode_for_model  # noqa: E402


def _median_ms(work, runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def reduced_decode(runs: int) -> dict:
    image = cv2.imread(str(sorted((sample.data_yaml().parent / "images" / "val").glob("*.jpg"))[0]))
    photo = cv2.resize(image, (4032, 3024), interpolation=cv2.INTER_CUBIC)
    data = cv2.imencode(".jpg", photo, [cv2.IMWRITE_JPEG_QUALITY, 92])[1].tobytes()
    full = _median_ms(lambda: decode_bytes(data), runs)
    rows = {"image": "4032x3024 JPEG", "bytes": len(data), "full_ms": round(full, 2)}
    for size in (640, 320):
        pixels, reduction = decode_for_model(data, (size, size))
        reduced = _median_ms(lambda: decode_for_model(data, (size, size)), runs)
        rows[f"model_{size}"] = {"factor": reduction.factor, "decoded": list(pixels.shape[:2]),
                                 "ms": round(reduced, 2), "speedup": round(full / reduced, 2)}
    return rows


def spool_sync(folder: Path, count: int) -> dict:
    from edgeport.daemon.spool import Spool

    out = {}
    for mode in ("FULL", "NORMAL"):
        spool = Spool(folder / f"spool-{mode}.sqlite", 100_000)
        spool._db.execute(f"PRAGMA synchronous={mode}")
        payload = b'{"camera":"yard","event":"appeared","score":0.9}' * 4
        started = time.perf_counter()
        for _ in range(count):
            spool.put("edgeport/yard/events", payload)
        put_s = time.perf_counter() - started
        started = time.perf_counter()
        while (item := spool.peek()) is not None:
            spool.ack(item[0])
        ack_s = time.perf_counter() - started
        spool.close()
        out[mode] = {"puts_per_s": round(count / put_s), "acks_per_s": round(count / ack_s),
                     "put_ms": round(put_s / count * 1000, 3)}
    out["put_cost_full_over_normal"] = round(out["NORMAL"]["puts_per_s"] / out["FULL"]["puts_per_s"], 2)
    return out


def paho_wrap(folder: Path) -> dict:
    from daemon_support import Broker, free_port, wait_for

    from edgeport.daemon.config import Mqtt
    from edgeport.daemon.metrics import Metrics
    from edgeport.daemon.mqtt import MqttLink
    from edgeport.daemon.spool import Spool

    broker = Broker(folder, free_port()).start()
    link = MqttLink(Mqtt(port=broker.port), Spool(folder / "wrap.sqlite", 10), Metrics(), ["yard"], ("a",))
    link.start()
    try:
        wait_for(lambda: link.connected, what="connected")
        started = time.perf_counter()
        for i in range(65_536 + 500):
            link.client.publish("edgeport/yard/detections", b"{}", qos=0)
            if i % 5000 == 0:
                wait_for(lambda: not link.client.want_write(), what="paho queue drained")
        wait_for(lambda: not link.client.want_write(), what="paho queue drained")
        seconds = time.perf_counter() - started
    finally:
        link.stop(drain_s=0)
        broker.stop()
    return {"publishes": 65_536 + 500, "seconds": round(seconds, 2), "per_s": round(66_036 / seconds)}


def bomb_rss() -> dict:
    from test_image_bomb import _child_peak_rss_mb, bomb_png

    data = bomb_png()
    message, peak_mb = _child_peak_rss_mb(data)
    return {"png_bytes": len(data), "refused": message, "peak_rss_mb": round(peak_mb, 1)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "daemon_faults.json")
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--events", type=int, default=500, help="spool puts per synchronous mode")
    parser.add_argument("--dir", type=Path, default=None, help="where the spool files go (default: a temp dir)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        folder = Path(tmp)
        steps = [("reduced JPEG decode", lambda: reduced_decode(args.runs)),
                 ("spool synchronous FULL vs NORMAL", lambda: spool_sync(folder, args.events)),
                 ("paho past 65,535 ids", lambda: paho_wrap(folder)),
                 ("bomb peak RSS", bomb_rss)]
        results = {"machine": platform.platform(), "python": platform.python_version()}
        for i, (name, step) in enumerate(steps, 1):
            print(f"[{i}/{len(steps)}] {name} ...", file=sys.stderr, flush=True)
            results[name] = step()
            print(json.dumps(results[name], indent=2), flush=True)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
