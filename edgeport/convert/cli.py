"""The `edgeport convert` subcommand: its flags read from the target registry (each target's own flags
build its own options type), one Job per command, and the report of the folder when --data is a DATA.yaml."""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Any

from edgeport.convert.targets import REGISTRY, precision_flags, target_flags


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _batch(args: argparse.Namespace) -> int:
    """convert --batch N or dynamic (0); 1 when the command has no --batch."""
    from edgeport.convert.targets import parse_batch

    return parse_batch(str(getattr(args, "batch", 1)))


def _dest(flag: str) -> str:
    """The argparse attribute of a target's own flag (--ort-web-dir: own_ort_web_dir)."""
    return "own_" + flag.lstrip("-").replace("-", "_")


def given_flags(args: argparse.Namespace) -> dict[str, Any]:
    """flag -> value of the targets' own flags this command line set (unset ones are absent from `args`)."""
    return {flag: getattr(args, _dest(flag)) for flag in target_flags() if hasattr(args, _dest(flag))}


def convert_options(args: argparse.Namespace, command: str, names: list[str], precision: str = "fp32", **fields):
    """ConvertOptions from the convert/quickstart arguments (the fields every target shares, `fields`), and
    each of the targets `names` its own options from the same arguments; raises ConversionError for a
    target flag none of `names` takes."""
    from edgeport.convert import ConvertOptions
    from edgeport.convert.targets import own_options

    shared = dict(out_dir=args.out, imgsz=getattr(args, "imgsz", None), opset=getattr(args, "opset", 17),
                  name=getattr(args, "name", None), command=command, progress=_say, precision=precision,
                  data=args.data, calibration_images=args.calibration_images,
                  calibration_dir=getattr(args, "calibration_dir", None) or args.out / "calib",
                  calibration_method=getattr(args, "calibration_method", None), check=getattr(args, "check", True),
                  batch=_batch(args), max_drop=getattr(args, "max_drop", None),
                  own=own_options(names, given_flags(args)))
    return ConvertOptions(**{**shared, **fields})


def convert_many_and_report(model: Path, names: list[str], args: argparse.Namespace, command: str) -> int:
    """Every target's default artifact (plus its integer variant with --data) into args.out, one Job (one
    calibration set), then the report of the folder when --data is a DATA.yaml; exit status 2 when a
    target failed."""
    from edgeport.cli import EXIT_ERROR
    from edgeport.convert import Job
    from edgeport.evaluate.dataset import is_data_yaml
    from edgeport.report.cli import run_report

    result = Job.of(model, convert_options(args, command, names)).run_many(names)
    for artifact in result.artifacts:
        print(artifact.path)
    _say(f"convert: {len(result.artifacts)} artifacts written"
         + "".join(f", {len(items)} {word}" for items, word in ((result.skipped, "skipped"), (result.failed, "failed"))
                   if items))
    status = 0
    if is_data_yaml(args.data) and result.artifacts:
        has_float_onnx = any(a.record.target == "onnx" and a.record.precision == "fp32" for a in result.artifacts)
        args.baseline = None if has_float_onnx or model.suffix != ".pt" else model
        status = run_report(args.out, args.data, args, command=command)
    elif args.data is not None:
        _say("convert: no labels (not a DATA.yaml): the accuracy report is skipped")
    for name, precision, error in result.failed:
        _say(f"edgeport: error: {name} {precision}: {error}")
    return EXIT_ERROR if result.failed else status


def chosen_precision(args: argparse.Namespace, target: str) -> str:
    """The precision a flag asks for (--int8, --w8a8, ...), else the target's single-target default."""
    from edgeport.convert.targets import BY_NAME

    for flag, (name, _) in precision_flags().items():
        if getattr(args, flag.lstrip("-").replace("-", "_")):
            return name
    return BY_NAME[target].single_default()


def cmd_convert(args: argparse.Namespace) -> int:
    from edgeport.convert import Job
    from edgeport.convert.targets import parse_targets

    names = parse_targets(args.target)
    command = shlex.join(["edgeport", *sys.argv[1:]])
    if args.target.strip() == "all" or len(names) > 1:
        return convert_many_and_report(args.model, names, args, command)
    target, precision = names[0], chosen_precision(args, names[0])
    options = convert_options(args, command, names, precision, calibration_dir=args.calibration_dir,
                              max_drop=args.max_drop)
    job = Job.of(args.model, options)
    artifact = job.run(target)
    print(artifact.path)
    for extra in artifact.extra_files:
        if not extra.name.endswith(".json"):
            print(extra)
    from edgeport.evaluate.dataset import is_data_yaml

    if not is_data_yaml(args.data):
        if args.data is not None:
            _say("convert: no labels (not a DATA.yaml): the accuracy report is skipped")
        return 0
    baseline = artifact.path
    if not (target == "onnx" and precision == "fp32"):
        baseline = job.convert("onnx", precision="fp32", check=False, batch=1).path
    if target == "tensorrt":
        _say("tensorrt: the row is measured in onnxruntime on the ONNX the engine is built from (the engine's proxy)")
    from edgeport.report import build_report
    from edgeport.report.cli import finish_report

    report = build_report(args.out, args.data, artifacts=[artifact.path], baseline=baseline, max_drop=args.max_drop,
                          threads=args.threads, robustness=False, keep_previous=True, command=command)
    return finish_report(report, args.max_drop)


def _add_registry_flags(p: argparse.ArgumentParser) -> None:
    """The precision flags (one mutually exclusive group) and every target's own flags, from the registry
    (no argparse default: the target's options type holds it, and an unset flag is absent from the args)."""
    group = p.add_mutually_exclusive_group()
    for flag, (_, text) in precision_flags().items():
        group.add_argument(flag, action="store_true", help=text)
    for option, _ in target_flags().values():
        keywords = dict(option.argparse)
        if "action" not in keywords and "choices" not in keywords:
            keywords.setdefault("metavar", option.field.upper())
        p.add_argument(option.flag, dest=_dest(option.flag), help=option.help, default=argparse.SUPPRESS, **keywords)


def add_parser(sub) -> None:
    """Register `edgeport convert` on the CLI's subparsers."""
    from edgeport.report.cli import add_report_options

    p = sub.add_parser("convert", help="convert an Ultralytics .pt or ONNX to edge artifacts",
                       description="Convert one detector (Ultralytics .pt or Ultralytics-exported .onnx). Every "
                       "written artifact is run against its float source on sample images first (--no-check skips). "
                       "With --target all or a comma list: each target's default artifact, plus its integer "
                       "variant when --data is given, then the report of the folder (as `edgeport report`).")
    p.add_argument("model", type=Path)
    p.add_argument("--target", required=True, metavar="TARGET",
                   help=f"all, or one or a comma list of: {', '.join(t.name for t in REGISTRY)}")
    p.add_argument("--no-check", dest="check", action="store_false",
                   help="do not run the artifact against its float source before reporting success")
    p.add_argument("--out", type=Path, default=Path("artifacts"), help="output folder (default: artifacts)")
    p.add_argument("--imgsz", type=int, default=None, help="input size (default: the training size)")
    p.add_argument("--opset", type=int, default=17)
    p.add_argument("--name", default=None, help="file stem of the artifact (default: the model's)")
    p.add_argument("--batch", default="1", metavar="N|dynamic",
                   help="images per invoke baked into the artifact (default 1); onnx, tflite: a fixed N (the "
                   "runtime pads the last group); onnx only: 'dynamic' (any batch size)")
    _add_registry_flags(p)
    p.add_argument("--data", type=Path, default=None,
                   help="DATA.yaml (calibration and accuracy report), or an image folder / video (calibration)")
    p.add_argument("--calibration-images", "--n", dest="calibration_images", type=int, default=300,
                   help="representative images (default 300)")
    p.add_argument("--calibration-dir", type=Path, default=None, help="cache folder for the calibration set")
    methods = sorted({m for t in REGISTRY for m in t.calibration_methods},
                     key=lambda m: (m != "minmax", m != "percentile", m))
    p.add_argument("--calibration-method", choices=methods, default=None,
                   help="default: minmax (tflite), percentile (onnx, tensorrt)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="exit 1 when a written artifact drops more points of mAP50-95 than this; int8 (onnx, "
                        "tensorrt, tflite, edgetpu) first keeps its most sensitive blocks in float until it holds")
    p.add_argument("--threads", type=int, default=None)
    add_report_options(p)
    p.set_defaults(func=cmd_convert)
