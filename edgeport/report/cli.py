"""The `edgeport report` subcommand: its options, the report run that `convert` and `quickstart` end
with, and the exit status (1 when an artifact drops more than --max-drop)."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path

RAY_SHARDS = 4  # image shards per evaluation on Ray: tasks to spread over the nodes


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def run_report(directory: Path, data: Path, args: argparse.Namespace, command: str) -> int:
    """Build the report of `directory` from the report options in `args`; print it; return the exit status."""
    from edgeport.report import build_report
    from edgeport.report.model import rows_from_file

    extra = [row for path in getattr(args, "rows", None) or [] for row in rows_from_file(path)]
    map_fn, shards = None, 1
    if getattr(args, "ray", None) is not None:  # the evaluations as Ray tasks (edgeport[cluster])
        from edgeport.cluster.session import check_address
        from edgeport.cluster.tasks import ray_map

        map_fn, shards = ray_map(None if args.ray == "local" else check_address(args.ray)), RAY_SHARDS
    report = build_report(directory, data, baseline=getattr(args, "baseline", None), max_drop=args.max_drop,
                          images=args.images, threads=args.threads, robustness=args.robustness,
                          cache_dir=args.cache_dir, command=command, extra_rows=extra, map_fn=map_fn, shards=shards,
                          arm64=getattr(args, "arm64", False))
    return finish_report(report, args.max_drop)


def finish_report(report, max_drop: float | None) -> int:
    """Print the table and the report's path, say what was skipped or not checked; 1 when a row is over budget."""
    from edgeport.report import SKIPPED, format_table

    print(format_table([r for r in report.rows if r.status != SKIPPED]))
    for row in report.rows:
        if row.status == SKIPPED:
            _say(f"report: skipped {Path(row.artifact).name}: {row.note}")
        elif row.map50_95 is None and max_drop is not None:
            _say(f"report: {Path(row.artifact).name} not checked against --max-drop: {row.note}")
    for row in report.failing:
        _say(f"edgeport: error: {Path(row.artifact).name} drops {row.drop_map50_95:.2f} points of mAP50-95, "
             f"more than --max-drop {max_drop}")
    print(report.directory / "report.html")
    return 1 if report.failing else 0


def cmd_report(args: argparse.Namespace) -> int:
    return run_report(args.dir, args.data, args, command=shlex.join(["edgeport", *sys.argv[1:]]))


def add_report_options(parser: argparse.ArgumentParser) -> None:
    """The evaluation options `report`, `convert` and `quickstart` share."""
    parser.add_argument("--images", type=int, default=None,
                        help="evaluate on N val images spread over the split (default: all)")
    parser.add_argument("--no-robustness", dest="robustness", action="store_false",
                        help="skip the perturbed-image evaluations")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="keep the perturbed image sets here and reuse them (default: a temporary folder)")
    parser.add_argument("--arm64", action="store_true", help="also evaluate each TFLite, ONNX and NCNN artifact "
                        "inside an emulated Raspberry Pi (arm64 Debian 12 under qemu, scripts/pi-rootfs.sh; root; "
                        "no latency)")


def add_parser(sub) -> None:
    """Register `edgeport report` on the CLI's subparsers."""
    p = sub.add_parser("report", help="compare every artifact of a folder: report.md, report.html, report.json",
                       description="Evaluate every artifact in DIR through the runtime against the float "
                       "baseline: mAP, drop, per-class drop, agreement, latency, robustness under perturbations; "
                       "write DIR/report.md, DIR/report.html (self-contained) and DIR/report.json.")
    p.add_argument("dir", type=Path, help="folder holding the artifacts")
    p.add_argument("--data", type=Path, required=True, help="DATA.yaml of a YOLO-format dataset (val split)")
    p.add_argument("--baseline", type=Path, default=None,
                   help="float baseline: an Ultralytics .pt (converted to float ONNX; also the FGSM gradient "
                   "model) or a float artifact (default: the float ONNX in DIR)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="exit 1 when an artifact drops more points of mAP50-95 than this (rows marked)")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--rows", type=Path, action="append", default=None, metavar="FILE",
                   help="add rows measured on another machine (a report.json, or a JSON list of rows, each "
                   "saying where in measured_on), e.g. an arm64 Raspberry Pi; repeatable")
    p.add_argument("--ray", nargs="?", const="local", default=None, metavar="ADDRESS",
                   help="run the evaluations (artifact x perturbation x image shard) as Ray tasks: no value starts "
                   "or joins a Ray on this machine; ADDRESS (host:port) joins that cluster")
    add_report_options(p)
    p.set_defaults(func=cmd_report)
