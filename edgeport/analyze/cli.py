"""The `edgeport analyze` subcommand: its options and the exit status (1 when a source failed)."""

from __future__ import annotations

import argparse
from pathlib import Path

LOCAL = "local"  # --ray without a value: start or join a Ray on this machine


def cmd_analyze(args: argparse.Namespace) -> int:
    from edgeport.analyze import AnalyzeOptions, analyze

    if args.batch < 1:
        from edgeport.errors import ConfigError

        raise ConfigError(f"--batch must be at least 1, got {args.batch}")
    options = AnalyzeOptions(model=str(args.model), batch=args.batch, conf=args.conf, iou=args.iou,
                             max_det=args.max_det, threads=args.threads, backend=args.backend, exif=args.exif,
                             save_video=args.save_video, progress=not args.quiet)
    engine, extra = None, {"ray": None}
    if args.ray is not None:
        from edgeport.cluster.analyze import ray_engine
        from edgeport.cluster.session import check_address

        address = None if args.ray == LOCAL else check_address(args.ray)
        engine, extra = ray_engine(address, block_batches=args.block_batches), {"ray": address or "local"}
    rows = analyze(args.sources, args.out, options, engine=engine, extra=extra)
    for row in rows:
        counts = ", ".join(f"{n} {name}" for name, n in row.counts.items()) or "no detections"
        speed = f", {row.frames_per_second} frames/s" if row.frames_per_second else ""
        print(f"{row.source}: {row.status}" + (f": {row.error}" if row.error else f", {row.frames} frames{speed}, "
                                                                                     f"{counts}"))
    print(Path(args.out) / "summary.json")
    return 1 if any(r.status == "failed" for r in rows) else 0


def add_parser(sub) -> None:
    """Register `edgeport analyze` on the CLI's subparsers."""
    p = sub.add_parser("analyze", help="detect objects in videos, image folders and image lists; JSON lines",
                       description="Run a model over recorded sources: one DIR/<source>.jsonl per source (frame, "
                       "timestamp, detections) and DIR/summary.json (per-class counts, frames, fps). A source "
                       "finished by an earlier run is skipped; an unfinished one is redone. With --ray the frames "
                       "are read and detected on Ray (this machine or a cluster), with the same output.")
    p.add_argument("sources", nargs="+", type=Path, metavar="SOURCE",
                   help="a video file, a folder of images, or a .txt list of image paths (one per line)")
    p.add_argument("--model", type=Path, required=True, help="the artifact to run (.onnx, .tflite, ...)")
    p.add_argument("--out", type=Path, required=True, help="output folder")
    p.add_argument("--batch", type=int, default=16, help="frames per inference batch (default 16)")
    p.add_argument("--save-video", action="store_true", help="also write DIR/<source>.annotated.mp4 for videos")
    p.add_argument("--ray", nargs="?", const=LOCAL, default=None, metavar="ADDRESS",
                   help="run on Ray: no value starts or joins a Ray on this machine; ADDRESS (host:port) joins "
                   "that cluster (under `ray job submit`, the job's cluster)")
    p.add_argument("--block-batches", type=int, default=4,
                   help="--ray: batches per Ray Data block (a block is a frame range of a video or a slice of a "
                   "folder; default 4)")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.45)
    p.add_argument("--max-det", type=int, default=300)
    p.add_argument("--threads", type=int, default=None, help="interpreter threads (default: every core; on "
                   "Ray: one per actor)")
    p.add_argument("--backend", default=None, help="force a backend (default: by file type)")
    p.add_argument("--no-exif", dest="exif", action="store_false", help="ignore EXIF orientation tags")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_analyze)
