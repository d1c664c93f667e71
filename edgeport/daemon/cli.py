"""`edgeport run` (quick mode: one source, JSON lines) and `edgeport daemon` (the long-running service)."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Callable

from edgeport.errors import ConfigError, EdgeportError


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _source_value(text: str) -> int | str:
    return int(text) if text.isdigit() else text


def cmd_run(args: argparse.Namespace) -> int:
    import cv2

    from edgeport.daemon.config import Camera, Reconnect
    from edgeport.daemon.redact import install_log_filter, redact
    from edgeport.daemon.sources import CaptureThread
    from edgeport.runtime import RuntimeOptions
    from edgeport.runtime.draw import draw

    detector = RuntimeOptions.from_args(args).open(args.model, conf=args.conf, iou=args.iou, exif=args.exif,
                                                   max_pixels=args.max_pixels)
    try:
        camera = Camera(id="run", source=_source_value(args.source), loop=args.loop, fps=args.fps,
                        reconnect=Reconnect(max_attempts=args.retries))
    except ValueError as exc:
        raise ConfigError(f"--source {redact(args.source)}: {redact(exc)}") from None
    install_log_filter()
    capture = CaptureThread(camera).start()
    writer = None
    frames = 0
    window_start, window_frames = time.monotonic(), 0
    try:
        while args.max_frames is None or frames < args.max_frames:
            frame = capture.take(timeout=0.2)
            if frame is None:
                if capture.state in ("ended", "failed") and not capture.alive and not capture.pending:
                    break
                continue
            rgb = cv2.cvtColor(frame.bgr, cv2.COLOR_BGR2RGB)
            detections = detector.detect_rgb([rgb])[0]
            frames += 1
            print(json.dumps({"frame": frame.index, "time": round(frame.wall, 3), **detections.to_dict()},
                             separators=(",", ":"), allow_nan=False), flush=True)
            if args.save:
                annotated = draw(frame.bgr, detections)
                if writer is None:
                    args.save.parent.mkdir(parents=True, exist_ok=True)
                    h, w = annotated.shape[:2]
                    writer = cv2.VideoWriter(str(args.save), cv2.VideoWriter_fourcc(*"mp4v"), args.save_fps, (w, h))
                    if not writer.isOpened():
                        raise EdgeportError(f"cannot write video {args.save} (use a .mp4 or .avi name)")
                if annotated.shape[:2] == (h, w):
                    writer.write(annotated)
            window_frames += 1
            elapsed = time.monotonic() - window_start
            if args.show_fps and elapsed >= 1.0:
                _say(f"fps {window_frames / elapsed:.1f} (dropped {capture.dropped})")
                window_start, window_frames = time.monotonic(), 0
    except KeyboardInterrupt:
        _say("edgeport: interrupted")
    finally:
        capture.stop()
        if writer is not None:
            writer.release()
    if capture.state == "failed" and frames == 0:
        raise EdgeportError(f"source {redact(args.source)}: {capture.error}")
    if args.save and writer is not None:
        _say(f"saved {args.save}")
    return 0


def _configure_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper()), stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")


def cmd_daemon(args: argparse.Namespace) -> int:
    from edgeport.daemon.config import load_config, schema_text

    if args.schema:
        print(schema_text())
        return 0
    if args.config is None:
        raise ConfigError("give the configuration: edgeport daemon --config edgeport.yaml")
    config = load_config(args.config)
    if args.check:
        from edgeport.daemon.check import check

        lines, problems = check(config)
        print(f"{args.config}: valid configuration")
        for line in lines:
            print(f"  {line}")
        if problems:
            raise ConfigError(f"{args.config}: " + "; ".join(problems))
        return 0
    from edgeport.daemon.service import Daemon

    _configure_logging(args.log_level)
    daemon = Daemon(config)  # opens the model and every output before any camera starts
    daemon.run(max_frames=args.max_frames)
    return 0


def add_parsers(sub, add_runtime_options: Callable[[argparse.ArgumentParser], None]) -> None:
    """Add `run` and `daemon` to the main parser's subcommands."""
    p = sub.add_parser("run", help="run a model on a camera, stream or video; JSON lines on stdout",
                       description="Quick mode: one source (V4L2 index or /dev/videoN, rtsp:// or http:// URL, "
                       "video file, image folder, picamera2, csi), one JSON line per frame.")
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--source", required=True)
    p.add_argument("--loop", action="store_true", help="files and folders: start again at the end")
    p.add_argument("--fps", type=float, default=None, help="cap on frames read per second")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--retries", type=int, default=5, help="reconnect attempts before giving up (default 5)")
    p.add_argument("--show-fps", action="store_true", help="print frames per second on stderr")
    p.add_argument("--save", type=Path, default=None, help="write the annotated video here (.mp4 or .avi)")
    p.add_argument("--save-fps", type=float, default=15.0, help="frame rate of the saved video (default 15)")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.45)
    add_runtime_options(p)
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("daemon", help="the camera daemon: cameras -> model -> MQTT, HTTP, JSONL",
                       description="Run the long-lived camera daemon from a YAML configuration (see "
                       "`edgeport daemon --schema`). SIGTERM/SIGINT drain the outputs and stop.")
    p.add_argument("--config", type=Path, default=None, help="edgeport.yaml")
    p.add_argument("--check", action="store_true", help="validate the configuration and exit")
    p.add_argument("--schema", action="store_true", help="print the configuration's JSON schema and exit")
    p.add_argument("--max-frames", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--log-level", default="info", choices=("debug", "info", "warning", "error"))
    p.set_defaults(func=cmd_daemon)
