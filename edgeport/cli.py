"""The `edgeport` command: quickstart, convert, report, evaluate, detect, analyze.

Every EdgeportError becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Sequence

from edgeport.errors import EdgeportError, ImageError
from edgeport.runtime.image_io import DEFAULT_MAX_PIXELS

EXIT_ERROR = 2


def _say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def _add_runtime_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", default=None,
                        help="force a backend (onnxruntime, litert, edgetpu, tensorrt, coreml); default: by file type")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: every core)")
    parser.add_argument("--spin", action="store_true",
                        help="onnxruntime: let idle worker threads spin-wait (faster on an idle machine, much slower "
                        "when capture, decode or other programs share the cores; default off)")
    parser.add_argument("--no-exif", dest="exif", action="store_false", help="ignore EXIF orientation tags")
    parser.add_argument("--device", default=None,
                        help="Edge TPU device for *_edgetpu.tflite: usb, usb:N, pci or pci:N (default: the first); "
                        "CoreML compute units for .mlpackage: ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE; OpenVINO device for "
                        ".xml: CPU (default), GPU, NPU, AUTO")
    parser.add_argument("--providers", default=None,
                        help="onnxruntime execution providers in order of preference, comma-separated: tensorrt, "
                        "cuda, cpu (or onnxruntime's names); default cpu")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels (decompression-bomb guard; default {DEFAULT_MAX_PIXELS:,})")


def _open(args: argparse.Namespace, model: Path, **options):
    """The Detector for detect/evaluate/run, built from the shared runtime options (RuntimeOptions)."""
    from edgeport.runtime import RuntimeOptions

    return RuntimeOptions.from_args(args).open(model, max_pixels=args.max_pixels, **options)


def _batch(args: argparse.Namespace) -> int:
    """convert --batch N or dynamic (0); 1 when the command has no --batch."""
    from edgeport.convert.targets import parse_batch

    return parse_batch(str(getattr(args, "batch", 1)))


def _convert_options(args: argparse.Namespace, command: str, precision: str = "fp32"):
    """ConvertOptions from the convert/quickstart arguments."""
    from edgeport.convert import ConvertOptions

    return ConvertOptions(out_dir=args.out, imgsz=getattr(args, "imgsz", None), opset=getattr(args, "opset", 17),
                          name=getattr(args, "name", None), command=command, progress=_say, precision=precision,
                          io=getattr(args, "io", "uint8"), data=args.data, calibration_images=args.calibration_images,
                          calibration_dir=getattr(args, "calibration_dir", None) or args.out / "calib",
                          calibration_method=getattr(args, "calibration_method", None),
                          check=getattr(args, "check", True), batch=_batch(args))


def convert_many_and_report(model: Path, names: list[str], args: argparse.Namespace, command: str) -> int:
    """Every target's default artifact (plus its integer variant with --data) into args.out, then the
    report of the folder when --data is a DATA.yaml; exit status 2 when a target failed."""
    from edgeport.convert.targets import convert_many
    from edgeport.evaluate.dataset import is_data_yaml

    result = convert_many(model, names, _convert_options(args, command), _say)
    for artifact in result.artifacts:
        print(artifact.path)
    _say(f"convert: {len(result.artifacts)} artifacts written"
         + "".join(f", {len(items)} {word}" for items, word in ((result.skipped, "skipped"), (result.failed, "failed"))
                   if items))
    status = 0
    if is_data_yaml(args.data) and result.artifacts:
        has_float_onnx = any(a.record.target == "onnx" and a.record.precision == "fp32" for a in result.artifacts)
        args.baseline = None if has_float_onnx or model.suffix != ".pt" else model
        status = _run_report(args.out, args.data, args, command=command)
    elif args.data is not None:
        _say("convert: no labels (not a DATA.yaml): the accuracy report is skipped")
    for name, precision, error in result.failed:
        _say(f"edgeport: error: {name} {precision}: {error}")
    return EXIT_ERROR if result.failed else status


def cmd_convert(args: argparse.Namespace) -> int:
    from edgeport.convert import ConvertOptions, convert
    from edgeport.convert.targets import parse_targets

    names = parse_targets(args.target)
    if args.target.strip() == "all" or len(names) > 1:
        return convert_many_and_report(args.model, names, args, shlex.join(["edgeport", *sys.argv[1:]]))
    args.target = names[0]
    precision = "int8" if args.int8 else "fp16" if args.fp16 else "dynamic" if args.dynamic else "fp32"
    # coreml: --int8-weights, --w8a8, --palettize; fp16 when no precision flag is given
    precision = ("int8w" if args.int8_weights else "w8a8" if args.w8a8 else "palette6" if args.palettize
                 else "fp16" if args.target == "coreml" and precision == "fp32" else precision)
    options = ConvertOptions(out_dir=args.out, imgsz=args.imgsz, opset=args.opset, name=args.name,
                             command=shlex.join(["edgeport", *sys.argv[1:]]), progress=_say, precision=precision,
                             io=args.io, data=args.data, calibration_images=args.calibration_images,
                             calibration_dir=args.calibration_dir, calibration_method=args.calibration_method,
                             max_drop=args.max_drop, fallback=args.fallback, ort_web_dir=args.ort_web_dir,
                             ort_format=args.ort_format, nms=args.nms, nms_iou=args.nms_iou, nms_conf=args.nms_conf,
                             check=args.check, batch=_batch(args))
    artifact = convert(args.model, args.target, options)
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
    if not (args.target == "onnx" and precision == "fp32"):
        baseline = convert(args.model, "onnx", ConvertOptions(out_dir=args.out, imgsz=args.imgsz, opset=args.opset,
                                                              name=args.name, command=options.command,
                                                              progress=_say, check=False)).path
    if args.target == "tensorrt":
        _say("tensorrt: the row is measured in onnxruntime on the ONNX the engine is built from (the engine's proxy)")
    from edgeport.report import build_report

    report = build_report(args.out, args.data, artifacts=[artifact.path], baseline=baseline, max_drop=args.max_drop,
                          threads=args.threads, robustness=False, keep_previous=True, command=options.command)
    return _finish_report(report, args.max_drop)


def cmd_jetson_build_engine(args: argparse.Namespace) -> int:
    from edgeport.devices.jetson.engine import EngineOptions, build_engine

    options = EngineOptions(precision="int8" if args.int8 else "fp16" if args.fp16 else None,
                            workspace_mb=args.workspace, timing_cache=args.timing_cache, dla_core=args.dla_core,
                            builder=args.builder)
    engine, _ = build_engine(args.onnx, args.out, options, progress=_say)
    print(engine)
    return 0


def cmd_jetson_csi_pipeline(args: argparse.Namespace) -> int:
    from edgeport.devices.jetson.camera import csi_pipeline

    print(csi_pipeline(args.sensor_id, args.width, args.height, args.fps, args.flip, args.out_width, args.out_height))
    return 0


def _add_jetson_parser(sub) -> None:
    jetson = sub.add_parser("jetson", help="NVIDIA Jetson: TensorRT engine build, CSI camera pipeline",
                            description="Run on the Jetson itself (see edgeport/devices/jetson/README.md).")
    commands = jetson.add_subparsers(dest="jetson_command", required=True, metavar="COMMAND")
    p = commands.add_parser("build-engine", help="build a TensorRT engine from `convert --target tensorrt` ONNX",
                            description="Build a serialized TensorRT engine and its metadata record "
                            "(<stem>.edgeport.json) with TensorRT's Python API, or trtexec when it is absent.")
    p.add_argument("onnx", type=Path)
    p.add_argument("--out", type=Path, default=None, help="engine path (default: the ONNX's name with .engine)")
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true", help="allow fp16 kernels (fp32 ONNX); fp16 ONNX: its own types")
    precision.add_argument("--int8", action="store_true", help="int8: requires the int8 QDQ ONNX (strongly typed build)")
    p.add_argument("--workspace", type=int, default=None, metavar="MB", help="builder workspace limit in MB")
    p.add_argument("--timing-cache", type=Path, default=None, metavar="FILE",
                   help="reuse and update a timing cache (faster rebuilds)")
    p.add_argument("--dla-core", type=int, default=None, metavar="N",
                   help="build for DLA core N (Xavier/Orin), layers DLA lacks fall back to the GPU")
    p.add_argument("--builder", choices=("auto", "python", "trtexec"), default="auto",
                   help="auto: TensorRT's Python API, else trtexec (default)")
    p.set_defaults(func=cmd_jetson_build_engine)
    p = commands.add_parser("csi-pipeline", help="print the GStreamer pipeline of a CSI camera (nvarguscamerasrc)")
    p.add_argument("--sensor-id", type=int, default=0)
    p.add_argument("--width", type=int, default=1920, help="sensor mode width (default 1920)")
    p.add_argument("--height", type=int, default=1080, help="sensor mode height (default 1080)")
    p.add_argument("--fps", type=int, default=30)
    p.add_argument("--flip", type=int, default=0, help="nvvidconv flip-method 0-7")
    p.add_argument("--out-width", type=int, default=None, help="frame width handed to OpenCV (default: sensor)")
    p.add_argument("--out-height", type=int, default=None)
    p.set_defaults(func=cmd_jetson_csi_pipeline)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from edgeport.evaluate import evaluate

    detector = _open(args, args.artifact)
    result = evaluate(detector, args.data, protocol=args.protocol, conf=args.conf, split=args.split, exif=args.exif)
    print(f"{Path(result.artifact).name} ({result.backend}, {result.protocol} protocol, {result.images} images)")
    print(f"  mAP50-95 {result.map50_95:.4f}   mAP50 {result.map50:.4f}   "
          f"P {result.precision:.3f} R {result.recall:.3f} @ conf {result.conf}   {result.images_per_second:.1f} img/s")
    for name, ap in result.per_class.items():
        print(f"  {name:<16} AP50-95 {ap:.4f}   AP50 {result.per_class_map50[name]:.4f}")
    if args.json:
        Path(args.json).write_text(result.to_json())
        _say(f"wrote {args.json}")
    return 0


def cmd_detect(args: argparse.Namespace) -> int:
    import cv2

    from edgeport.runtime.draw import draw

    detector = _open(args, args.model, conf=args.conf, iou=args.iou, max_det=args.max_det, exif=args.exif)
    if args.save_dir:
        args.save_dir.mkdir(parents=True, exist_ok=True)
    failed = 0
    for image in args.images:
        try:
            rgb = detector.load(image)
        except ImageError as exc:  # one bad image must not lose the others
            _say(f"edgeport: error: {exc}")
            failed += 1
            continue
        detections = detector.detect_rgb([rgb])[0]
        detections.meta["image"] = str(image)
        print(detections.to_json(), flush=True)
        if args.save_dir:
            out = args.save_dir / (Path(image).stem + ".jpg")
            cv2.imwrite(str(out), draw(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), detections))
    return 1 if failed else 0


def cmd_serve_web(args: argparse.Namespace) -> int:
    from edgeport.errors import ModelNotFoundError
    from edgeport.web import MANIFEST
    from edgeport.web.serve import make_server

    if not (args.directory / MANIFEST).is_file():
        raise ModelNotFoundError(f"{args.directory} is not an onnx-web folder (no {MANIFEST}); "
                                 "make one with `edgeport convert MODEL --target onnx-web`")
    server = make_server(args.directory, args.port, args.host, args.isolated)
    _say(f"serving {args.directory} at http://{args.host}:{server.server_port}/ (Ctrl-C stops)")
    try:
        server.serve_forever()
    finally:
        server.server_close()
    return 0


def cmd_calibrate(args: argparse.Namespace) -> int:
    from edgeport.calibration import build_calibration_set, describe_coverage

    calibration = build_calibration_set(args.data, imgsz=args.imgsz, n=args.n, out_dir=args.out, split=args.split,
                                        seed=args.seed)
    print(describe_coverage(calibration))
    print(args.out / "calibration.npz")
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    """`convert MODEL --target all --data <bundled val split>` on each bundled sample model (or --model)."""
    from edgeport import sample
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


RAY_SHARDS = 4  # image shards per evaluation on Ray: tasks to spread over the nodes


def _run_report(directory: Path, data: Path, args: argparse.Namespace, command: str) -> int:
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
    return _finish_report(report, args.max_drop)


def _finish_report(report, max_drop: float | None) -> int:
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
    return _run_report(args.dir, args.data, args, command=shlex.join(["edgeport", *sys.argv[1:]]))


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--images", type=int, default=None,
                        help="evaluate on N val images spread over the split (default: all)")
    parser.add_argument("--no-robustness", dest="robustness", action="store_false",
                        help="skip the perturbed-image evaluations")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="keep the perturbed image sets here and reuse them (default: a temporary folder)")
    parser.add_argument("--arm64", action="store_true", help="also evaluate each TFLite and ONNX artifact inside an "
                        "emulated Raspberry Pi (arm64 Debian 12 under qemu, scripts/pi-rootfs.sh; root; no latency)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeport", description="Convert one trained detector to every edge "
                                     "format, measure each one's accuracy drop, and run any of them lightly.")
    from edgeport import __version__

    parser.add_argument("--version", action="version", version=f"edgeport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

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
    _add_report_options(p)
    p.set_defaults(func=cmd_quickstart)

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
    _add_report_options(p)
    p.set_defaults(func=cmd_report)

    from edgeport.convert.targets import REGISTRY

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
    precision = p.add_mutually_exclusive_group()
    precision.add_argument("--fp16", action="store_true",
                           help="tflite: float16 weights; onnx, tensorrt: float16 weights and compute, float32 I/O; "
                           "coreml: fp16 compute (its default); openvino: float16 (compressed) weights")
    precision.add_argument("--dynamic", action="store_true", help="tflite: dynamic-range int8 (int8 weights)")
    precision.add_argument("--int8", action="store_true",
                           help="tflite: full-integer int8; onnx, tensorrt: static int8 QDQ (decode in float); "
                           "openvino: NNCF int8 (decode in float); calibrated on --data")
    precision.add_argument("--int8-weights", action="store_true",
                           help="coreml: int8 per-channel weights (linear_quantize_weights), fp16 compute")
    precision.add_argument("--w8a8", action="store_true",
                           help="coreml: int8 weights and activations, activations calibrated on --data (in torch)")
    precision.add_argument("--palettize", action="store_true", help="coreml: 6-bit palettized weights, fp16 compute")
    p.add_argument("--nms", action="store_true",
                   help="coreml: also write <name>_nms.mlpackage, a pipeline with NonMaximumSuppression for Vision")
    p.add_argument("--nms-iou", type=float, default=0.45, help="coreml --nms: default IoU threshold (0.45)")
    p.add_argument("--nms-conf", type=float, default=0.25, help="coreml --nms: default confidence threshold (0.25)")
    p.add_argument("--io", choices=("uint8", "int8", "float"), default="uint8",
                   help="int8 input/output type (default uint8: camera frames go in without a float pass)")
    p.add_argument("--data", type=Path, default=None,
                   help="DATA.yaml (calibration and accuracy report), or an image folder / video (calibration)")
    p.add_argument("--calibration-images", "--n", dest="calibration_images", type=int, default=300,
                   help="representative images (default 300)")
    p.add_argument("--calibration-dir", type=Path, default=None, help="cache folder for the calibration set")
    p.add_argument("--calibration-method", choices=("minmax", "percentile", "entropy"), default=None,
                   help="default: minmax (tflite), percentile (onnx, tensorrt)")
    p.add_argument("--max-drop", type=float, default=None,
                   help="exit 1 when a written artifact drops more points of mAP50-95 than this; openvino "
                   "--int8: NNCF accuracy control keeps layers in float until the drop holds")
    p.add_argument("--fallback", action="store_true",
                   help="int8: when --max-drop is missed, keep the most sensitive layers in int16 until it holds")
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--ort-web-dir", type=Path, default=None,
                   help="onnx-web: onnxruntime-web's package folder "
                   "(default: $EDGEPORT_ORT_WEB_DIR, else node_modules)")
    p.add_argument("--ort-format", action="store_true",
                   help="onnx-web: also write the model in onnxruntime's .ort format (the page: ?format=ort)")
    _add_report_options(p)
    p.set_defaults(func=cmd_convert)

    p = sub.add_parser("serve-web", help="serve an onnx-web folder on loopback (threads enabled)",
                       description="Serve an `--target onnx-web` folder over HTTP with the MIME types ES modules and "
                       "WebAssembly need and the cross-origin isolation headers that enable wasm threads.")
    p.add_argument("directory", type=Path)
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--no-isolation", dest="isolated", action="store_false",
                   help="omit the COOP/COEP headers (the page then runs single-threaded)")
    p.set_defaults(func=cmd_serve_web)

    p = sub.add_parser("calibrate", help="sample a representative calibration set (cached)",
                       description="Sample a calibration set from a DATA.yaml (class-balanced from labels), an "
                       "image folder or a video (spread over time), letterboxed by the runtime's own code; cached "
                       "by content hash and reused while unchanged.")
    p.add_argument("--data", type=Path, required=True, help="DATA.yaml, an image folder or a video file")
    p.add_argument("--n", type=int, default=300, help="images to sample (default 300)")
    p.add_argument("--imgsz", type=int, default=320, help="model input size (default 320)")
    p.add_argument("--split", default="train", help="DATA.yaml split to sample (falls back to val)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=Path("calib"), help="cache folder (default: calib)")
    p.set_defaults(func=cmd_calibrate)

    p = sub.add_parser("evaluate", help="mAP of an artifact on a YOLO-format dataset, through the runtime",
                       description="Evaluate an artifact through the runtime: mAP50-95, mAP50, per-class AP, "
                       "precision and recall at --conf, images per second.")
    p.add_argument("artifact", type=Path)
    p.add_argument("--data", type=Path, required=True, help="DATA.yaml of a YOLO-format dataset")
    p.add_argument("--split", default="val")
    p.add_argument("--protocol", choices=("coco", "ultralytics"), default="coco",
                   help="coco: 101-point AP as pycocotools (default); ultralytics: as `yolo val`")
    p.add_argument("--conf", type=float, default=0.25, help="threshold for the reported precision and recall")
    p.add_argument("--json", type=Path, default=None, help="write the result as JSON")
    _add_runtime_options(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("detect", help="detect objects in images; JSON lines on stdout",
                       description="Run an artifact on images; print one JSON line per image.")
    p.add_argument("images", nargs="+", type=Path)
    p.add_argument("--model", type=Path, required=True)
    p.add_argument("--save-dir", type=Path, default=None, help="save annotated images here")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--iou", type=float, default=0.45)
    p.add_argument("--max-det", type=int, default=300)
    _add_runtime_options(p)
    p.set_defaults(func=cmd_detect)

    from edgeport.daemon.cli import add_parsers as add_daemon_parsers

    add_daemon_parsers(sub, _add_runtime_options)
    from edgeport.analyze.cli import add_parser as add_analyze_parser

    add_analyze_parser(sub)
    _add_jetson_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except EdgeportError as exc:
        _say(f"edgeport: error: {exc}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say("edgeport: interrupted")
        return 130


if __name__ == "__main__":
    sys.exit(main())
