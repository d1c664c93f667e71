"""Each target's own options type: declared on its registry entry, built by the CLI from the flags that set its
fields (defaults from the type), refused in one line when the chosen target does not take the flag, and read by
the running target as job.target_options."""

from __future__ import annotations

from dataclasses import fields, is_dataclass, replace
from pathlib import Path

import pytest

from edgeport.artifact import ArtifactRecord, TensorSpec
from edgeport.convert import (Artifact, ConvertOptions, CoremlOptions, EdgeTpuOptions, Job, OnnxWebOptions,
                              RknnOptions, TfliteOptions, convert)
from edgeport.convert import targets
from edgeport.convert.cli import convert_options
from edgeport.convert.targets import BY_NAME, REGISTRY, Precision, Target
from edgeport.errors import ConversionError

SEEN: list[tuple[str, object]] = []


def _parse(*argv: str):
    from edgeport.cli import build_parser

    return build_parser().parse_args(["convert", "m.pt", *argv])


def _own(*argv: str) -> tuple:
    """The own options the CLI builds from `argv` (its --target list)."""
    args = _parse(*argv)
    return convert_options(args, "", targets.parse_targets(args.target)).own


def test_each_targets_options_type_and_flags_come_from_the_registry():
    owned = {t.name: t.options for t in REGISTRY if t.options is not None}
    assert owned == {"tflite": TfliteOptions, "edgetpu": EdgeTpuOptions, "onnx-web": OnnxWebOptions,
                     "coreml": CoremlOptions, "rknn": RknnOptions}
    for target in REGISTRY:
        assert bool(target.flags) == (target.options is not None), target.name
        if target.options is not None:
            assert is_dataclass(target.options) and target.options.__dataclass_params__.frozen
            names = {f.name for f in fields(target.options) if not f.metadata.get("internal")}
            assert {option.field for option in target.flags} == names, target.name  # every field has its flag
            assert all("default" not in dict(option.argparse) for option in target.flags)  # the type holds it
    assert _own("--target", "rknn", "--platform", "rk3576") == (RknnOptions(platform="rk3576"),)
    assert _own("--target", "onnx-web", "--ort-format", "--ort-web-dir", "ow") == (
        OnnxWebOptions(ort_web_dir=Path("ow"), ort_format=True),)


def test_unset_flags_take_the_types_defaults():
    assert _own("--target", "coreml", "--nms") == (CoremlOptions(nms=True, nms_iou=0.45, nms_conf=0.25),)
    assert _own("--target", "tflite") == (TfliteOptions(io="uint8", fallback=False),)
    assert _own("--target", "onnx") == ()  # no options type of its own
    assert BY_NAME["rknn"].own(()) == RknnOptions() and BY_NAME["onnx"].own(()) is None


def test_target_all_and_a_list_build_each_targets_options_from_the_same_args():
    own = _own("--target", "all", "--io", "int8", "--platform", "rk3576", "--nms", "--nms-iou", "0.5")
    assert own == (TfliteOptions(io="int8"), EdgeTpuOptions(io="int8"), OnnxWebOptions(),
                   CoremlOptions(nms=True, nms_iou=0.5), RknnOptions(platform="rk3576"))
    assert _own("--target", "onnx,edgetpu,tflite", "--io", "float") == (TfliteOptions(io="float"),
                                                                        EdgeTpuOptions(io="float"))


@pytest.mark.parametrize("argv, message", [
    (("--target", "onnx", "--platform", "rk3576"),
     "--platform is an option of the rknn target only; --target onnx does not take it"),
    (("--target", "onnx,tflite", "--nms"), "--nms is an option of the coreml target only; --target onnx,tflite "
                                           "does not take it"),
    (("--target", "ncnn", "--io", "int8"), "--io is an option of the tflite and edgetpu targets only; --target ncnn "
                                           "does not take it"),
    (("--target", "openvino", "--int8", "--fallback"),
     "--fallback is an option of the tflite target only; --target openvino does not take it (--max-drop N alone "
     "keeps the layers that cost accuracy in float on onnx, tensorrt, openvino and tflite)"),
])
def test_a_foreign_flag_is_refused_in_one_line_naming_its_owner(argv, message, sample_model, tmp_path, capsys):
    from edgeport.cli import main

    assert main(["convert", str(sample_model), *argv, "--out", str(tmp_path / "out")]) == 2
    assert capsys.readouterr().err.splitlines() == [f"edgeport: error: {message}"]
    assert not (tmp_path / "out").exists()  # refused before any work


def test_convert_refuses_another_targets_options_set_away_from_their_defaults(sample_model, tmp_path):
    with pytest.raises(ConversionError, match="^--fallback is an option of the tflite target only; --target onnx"):
        convert(sample_model, "onnx", ConvertOptions(out_dir=tmp_path, own=(TfliteOptions(fallback=True),)))
    with pytest.raises(ConversionError, match="needs integer input and output"):  # edgetpu reads its own --io
        convert(sample_model, "edgetpu", ConvertOptions(out_dir=tmp_path, own=(EdgeTpuOptions(io="float"),)))
    assert not list(tmp_path.iterdir())


def test_flat_keywords_still_reach_the_targets_options():
    options = ConvertOptions(precision="int8", io="float", fallback=True, platform="rk3576", nms=True)
    expected = {TfliteOptions(io="float", fallback=True), EdgeTpuOptions(io="float"), RknnOptions("rk3576"),
                CoremlOptions(nms=True)}
    assert set(options.own) == expected
    assert set(replace(options, precision="fp16").own) == expected  # replace keeps them
    assert set(ConvertOptions(own=(RknnOptions("rv1106"),), io="int8").own) == {
        RknnOptions("rv1106"), TfliteOptions(io="int8"), EdgeTpuOptions(io="int8")}


class Seen(Exception):
    """Raised by the stand-in tflite target with the options it was handed."""


def record_tflite(job: Job) -> Artifact:
    raise Seen(job.target_options)


def write_stand_in(job: Job) -> Artifact:
    """A target that writes a file and notes the own options it ran with."""
    SEEN.append((job.target, job.target_options))
    out = job.options.out_dir / f"{job.target}_{job.options.precision}.bin"
    out.write_bytes(b"x")
    record = ArtifactRecord(names=("a",), imgsz=(32, 32), layout="NHWC",
                            inputs=(TensorSpec("x", (1, 32, 32, 3), "uint8"),),
                            outputs=(TensorSpec("y", (1, 4), "float32"),), target=job.target,
                            precision=job.options.precision)
    return Artifact(out, record)


@pytest.fixture
def stand_ins(monkeypatch):
    fp32 = (Precision("fp32", "float32"),)
    for target in (Target("tflite", f"{__name__}:write_stand_in", fp32, "fp32", options=TfliteOptions,
                          flags=BY_NAME["tflite"].flags),
                   Target("rknn", f"{__name__}:write_stand_in", fp32, "fp32", options=RknnOptions,
                          flags=BY_NAME["rknn"].flags),
                   Target("onnx", f"{__name__}:write_stand_in", fp32, "fp32")):
        monkeypatch.setitem(targets.BY_NAME, target.name, target)
    SEEN.clear()


def test_each_target_of_a_job_runs_with_its_own_options(stand_ins, sample_model, tmp_path):
    options = ConvertOptions(out_dir=tmp_path, check=False, own=(RknnOptions("rk3566"), TfliteOptions(io="int8")))
    result = Job.of(sample_model, options).run_many(["tflite", "rknn", "onnx"])
    assert not result.failed and len(result.artifacts) == 3
    assert SEEN == [("tflite", TfliteOptions(io="int8")), ("rknn", RknnOptions("rk3566")), ("onnx", None)]


def test_edgetpu_hands_its_io_to_the_tflite_it_builds(monkeypatch, sample_model, tmp_path):
    tflite = replace(BY_NAME["tflite"], entry=f"{__name__}:record_tflite")
    monkeypatch.setitem(targets.BY_NAME, "tflite", tflite)
    job = Job.of(sample_model, ConvertOptions(out_dir=tmp_path, own=(EdgeTpuOptions(io="int8"),)))
    with pytest.raises(Seen) as seen:
        job.convert("edgetpu")
    assert seen.value.args == (TfliteOptions(io="int8", edgetpu=True),)  # and the Edge TPU order of its search
