"""The `edgeport quickstart` subcommand: `convert --target all` on the bundled sample models with the
bundled val split, ending with the report."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def cmd_quickstart(args: argparse.Namespace) -> int:
    """`convert MODEL --target all --data <bundled val split>` on each bundled sample model (or --model)."""
    from edgeport import sample
    from edgeport.convert.cli import convert_many_and_report
    from edgeport.convert.targets import parse_targets

    data, out, status = sample.data_yaml(), args.out, 0
    models = sample.pick_model(args.model)
    for model in models:
        args.out = out / model.stem if len(models) > 1 else out
        args.data = data
        _say(f"quickstart: bundled model {model.name}, val split {data.parent}, into {args.out}")
        status = max(status, convert_many_and_report(model, parse_targets("all"), args,
                                                     command=f"edgeport quickstart --model {model.stem}"))
    return status


def add_parser(sub) -> None:
    """Register `edgeport quickstart` on the CLI's subparsers."""
    from edgeport.report.cli import add_report_options

    p = sub.add_parser("quickstart", help="convert the bundled sample model to every target and compare them",
                       description="Convert the bundled sample model to every target, then run `edgeport report` "
                       "on them with the bundled val split: table, report.md, report.html, report.json.")
    p.add_argument("--out", type=Path, default=Path("edgeport-quickstart"), help="output folder")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--calibration-images", type=int, default=80, help="int8 calibration images (default 80)")
    p.add_argument("--max-drop", type=float, default=None, help="exit 1 when an artifact drops more points")
    p.add_argument("--model", default=None,
                   help="one bundled sample by name (e.g. yolov8n, yolo26n; default: every bundled sample, each "
                   "into OUT/<model>)")
    add_report_options(p)
    p.set_defaults(func=cmd_quickstart)
