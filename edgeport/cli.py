"""The `edgeport` command: quickstart, convert, report, evaluate, detect, analyze.

Every EdgeportError becomes one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
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
                        help="force a backend (onnxruntime, litert, edgetpu, tensorrt, coreml, ncnn, rknn, "
                        "rknn-sim); default: by file type")
    parser.add_argument("--threads", type=int, default=None, help="interpreter threads (default: every core)")
    parser.add_argument("--spin", action="store_true",
                        help="onnxruntime, ncnn: let idle worker threads spin-wait (faster on an idle machine, much "
                        "slower when capture, decode or other programs share the cores; default off)")
    parser.add_argument("--no-exif", dest="exif", action="store_false", help="ignore EXIF orientation tags")
    parser.add_argument("--device", default=None,
                        help="Edge TPU device for *_edgetpu.tflite: usb, usb:N, pci or pci:N (default: the first); "
                        "CoreML compute units for .mlpackage: ALL, CPU_ONLY, CPU_AND_GPU, CPU_AND_NE; "
                        "RKNN NPU cores for .rknn: auto, 0, 1, 2, 0_1, 0_1_2, all")
    parser.add_argument("--providers", default=None,
                        help="onnxruntime execution providers in order of preference, comma-separated: tensorrt, "
                        "cuda, cpu (or onnxruntime's names); default cpu")
    parser.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help=f"refuse images with more pixels (decompression-bomb guard; default {DEFAULT_MAX_PIXELS:,})")


def _open(args: argparse.Namespace, model: Path, **options):
    """The Detector for detect/evaluate/run, built from the shared runtime options (RuntimeOptions)."""
    from edgeport.runtime import RuntimeOptions

    return RuntimeOptions.from_args(args).open(model, max_pixels=args.max_pixels, **options)


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
    if not args.save_dir:  # the next image is decoded (large JPEGs at reduced scale) while this one is invoked
        return _detect_streamed(detector, args.images)
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


def _detect_streamed(detector, images: list) -> int:
    from edgeport.runtime.pipeline import detect_stream

    failed = 0
    for image, found in detect_stream([detector], images):
        if isinstance(found, ImageError):  # one bad image must not lose the others
            _say(f"edgeport: error: {found}")
            failed += 1
            continue
        found.meta["image"] = str(image)
        print(found.to_json(), flush=True)
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


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="edgeport", description="Convert one trained detector to every edge "
                                     "format, measure each one's accuracy drop, and run any of them lightly.")
    from edgeport import __version__

    parser.add_argument("--version", action="version", version=f"edgeport {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    from edgeport.convert.cli import add_parser as add_convert_parser
    from edgeport.report.cli import add_parser as add_report_parser
    from edgeport.sample.cli import add_parser as add_quickstart_parser

    add_quickstart_parser(sub)
    add_report_parser(sub)
    add_convert_parser(sub)
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
