"""The convert Job and the Target interface: one calibration set per job, progress and records one way,
targets of the older (source, options) shape through the adapter, CLI flags read from the registry."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import pytest

from edgeport.artifact import ArtifactRecord, TensorSpec, read_sidecar
from edgeport.convert import Artifact, ConvertOptions, Job
from edgeport.convert import targets
from edgeport.convert.job import write_record
from edgeport.convert.targets import Precision, Target


def _record(name: str, precision: str, prov: dict) -> ArtifactRecord:
    return ArtifactRecord(names=("a",), imgsz=(32, 32), layout="NHWC", inputs=(TensorSpec("x", (1, 32, 32, 3), "uint8"),),
                          outputs=(TensorSpec("y", (1, 4), "float32"),), target=name, precision=precision,
                          provenance=prov)


def convert_stand_in(job: Job) -> Artifact:
    """A target of today's shape: calibrates through the job, writes its record the job's way."""
    calibration = job.calibration(32) if job.options.precision == "int8" else None
    out = job.options.out_dir / f"{job.source.stem}_{job.options.name}_{job.options.precision}.bin"
    out.write_bytes(b"stand-in")
    record = _record("stand-in", job.options.precision, {"calibration_sha256": calibration and calibration.sha256})
    write_record(out, record)
    job.say(f"stand-in: wrote {out.name}")
    return Artifact(out, record)


def convert_older_shape(source: Path, options: ConvertOptions) -> Artifact:
    """A target written as convert_x(source, options), as targets in flight are."""
    out = options.out_dir / f"{source.stem}_older.bin"
    out.write_bytes(b"older")
    options.progress(f"older: {source.name} at {options.precision}")
    return Artifact(out, _record("older", options.precision, {}))


@dataclass(frozen=True)
class OlderOptions:
    knob: int = 17


INT8 = Precision("int8", "stand-in int8", needs_data=True, flag="--int8")
STAND_INS = (Target("stand-a", f"{__name__}:convert_stand_in", (Precision("fp32", "float32"), INT8), "fp32", "int8"),
             Target("stand-b", f"{__name__}:convert_stand_in", (INT8,), "int8"),
             Target("older", f"{__name__}:convert_older_shape", (Precision("fp32", "float32"),), "fp32",
                    options=OlderOptions,
                    flags=(targets.Option("--older-knob", "knob", "older: a knob", (("type", int),)),)))


@pytest.fixture
def stand_ins(monkeypatch):
    monkeypatch.setattr(targets, "REGISTRY", targets.REGISTRY + STAND_INS)
    for target in STAND_INS:
        monkeypatch.setitem(targets.BY_NAME, target.name, target)


@pytest.fixture
def four_images(tmp_path, val_images) -> Path:
    folder = tmp_path / "images"
    folder.mkdir()
    for image in val_images[:4]:
        (folder / image.name).write_bytes(image.read_bytes())
    return folder


def test_two_integer_targets_share_one_calibration_set(stand_ins, sample_model, four_images, tmp_path):
    lines: list[str] = []
    options = ConvertOptions(out_dir=tmp_path / "out", name="j", data=four_images, calibration_images=4,
                             check=False, progress=lines.append)
    result = Job.of(sample_model, options).run_many(["stand-a", "stand-b", "older"])
    assert [(a.record.target, a.record.precision) for a in result.artifacts] == [
        ("stand-in", "fp32"), ("stand-in", "int8"), ("stand-in", "int8"), ("older", "fp32")]
    assert not result.failed and not result.skipped
    built = [line for line in lines if "built once for this job" in line]
    reused = [line for line in lines if line.startswith("calibration: reusing this job's set")]
    assert len(built) == 1 and "4 images at 32 px" in built[0] and len(reused) == 1
    shas = {read_sidecar(a.path).provenance["calibration_sha256"] for a in result.artifacts[1:3]}
    assert len(shas) == 1 and None not in shas  # both int8 artifacts name the same set, read back from the sidecar
    assert "older: shapes_yolov8n.pt at fp32" in lines  # the adapter wires the older shape to the job's progress


def test_a_fresh_job_calibrates_again_and_a_missing_data_is_one_clear_error(sample_model, four_images, tmp_path):
    from edgeport.errors import ConversionError

    first = Job.of(sample_model, ConvertOptions(data=four_images, calibration_images=4))
    assert first.calibration(32) is first.derive(precision="int8").calibration(32)  # derived jobs share it
    assert Job.of(sample_model, ConvertOptions(data=four_images, calibration_images=4)).calibration(32) \
        is not first.calibration(32)
    with pytest.raises(ConversionError, match="pass --data"):
        Job.of(sample_model, ConvertOptions()).calibration(32)


def test_write_record_embeds_in_onnx_and_writes_the_sidecar_when_asked(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])])
    record = _record("onnx", "fp32", {"note": "embedded"})
    path = tmp_path / "m.onnx"
    assert write_record(path, record, onnx_model=helper.make_model(graph)) is None
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert json.loads(meta["names"]) == ["a"] and json.loads(meta["edgeport"])["provenance"] == {"note": "embedded"}
    assert not (tmp_path / "m.edgeport.json").exists()
    sidecar = write_record(path, record, onnx_model=onnx.load(str(path)), sidecar=True)
    assert sidecar is not None and read_sidecar(path).provenance == {"note": "embedded"}


def test_cli_precision_and_target_flags_come_from_the_registry(stand_ins, capsys):
    from edgeport.cli import build_parser
    from edgeport.convert.cli import convert_options

    parser = build_parser()
    args = parser.parse_args(["convert", "m.pt", "--target", "older", "--older-knob", "19", "--int8"])
    assert convert_options(args, "", ["older"]).own == (OlderOptions(knob=19),) and args.int8
    with pytest.raises(SystemExit):
        parser.parse_args(["convert", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "stand-a, stand-b: stand-in int8" in text and "older: a knob" in text
