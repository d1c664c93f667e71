"""`Job`: one source converted to one or more targets, with one calibration set, one progress channel,
one way of writing records, and the agreement check (edgeport.convert.verify) after each target.

Targets take the Job (`convert_x(job) -> Artifact`) and read `job.options` (what every target takes) and
`job.target_options` (their own options type, from the registry); `job.derive(...)` hands a target built on
another (edgetpu on tflite, onnx-web on onnx) the same calibration set and progress.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

from edgeport.artifact import ArtifactRecord, write_sidecar
from edgeport.convert.base import Artifact, ConvertOptions, check_source
from edgeport.convert.targets import BY_NAME, Target, check_batch, plan
from edgeport.errors import ConversionError, EdgeportError, MissingDependencyError


def _quiet(line: str) -> None:
    """The progress channel of a job nobody watches."""


@dataclass
class _Shared:
    """What every Job derived from one `Job.of` shares: calibration sets by input size, their uses, and
    intermediate models targets build on each other (the int8 ONNX onnx-web reuses, search included)."""

    calibrations: dict[int, Any] = field(default_factory=dict)
    uses: dict[int, int] = field(default_factory=dict)
    models: dict[tuple, Any] = field(default_factory=dict)


@dataclass
class Job:
    """One conversion run: the source, the options of the target now running, the shared state."""

    source: Path
    options: ConvertOptions
    shared: _Shared = field(default_factory=_Shared)
    target: str | None = None  # the target now running (set by Job.convert)

    @classmethod
    def of(cls, model: str | Path, options: ConvertOptions = ConvertOptions()) -> Job:
        """A Job on `model` (checked: ModelNotFoundError, UnsupportedModelError)."""
        return cls(check_source(model), options)

    @property
    def say(self) -> Callable[[str], None]:
        """The progress channel: one line per step (options.progress, or nothing)."""
        return self.options.progress or _quiet

    @property
    def target_options(self) -> Any:
        """The running target's own options (its Target.options type): the one in options.own, else the type's
        defaults; None for a target without an options type, or outside Job.convert."""
        return BY_NAME[self.target].own(self.options.own) if self.target in BY_NAME else None

    def derive(self, **changes: Any) -> Job:
        """This job with some options changed (precision, out_dir, own, check...), sharing its calibration set."""
        return replace(self, options=replace(self.options, **changes))

    def model(self):
        """The SourceModel of the .pt source at options.imgsz (loaded once per process)."""
        from edgeport.convert.source import load_source

        return load_source(self.source, self.options.imgsz)

    def calibration(self, imgsz: int):
        """The job's calibration set at `imgsz`: built (or read from options.calibration_dir) on first use,
        the same object for every later target; says which. Raises ConversionError without options.data."""
        options, say = self.options, self.say
        if options.data is None:
            raise ConversionError("calibration needs representative images: pass --data DATA.yaml, an image folder "
                                  "or a video")
        uses = self.shared.uses[imgsz] = self.shared.uses.get(imgsz, 0) + 1
        if imgsz not in self.shared.calibrations:
            from edgeport.calibration import build_calibration_set, describe_coverage

            calibration = build_calibration_set(options.data, imgsz=imgsz, n=options.calibration_images,
                                                out_dir=options.calibration_dir, progress=options.progress is not None)
            self.shared.calibrations[imgsz] = calibration
            say(describe_coverage(calibration))
            say(f"calibration: {len(calibration)} images at {imgsz} px built once for this job "
                f"({'read from the cache' if calibration.cached else 'sampled'}); later targets reuse it")
        else:
            calibration = self.shared.calibrations[imgsz]
            say(f"calibration: reusing this job's set ({len(calibration)} images at {imgsz} px, use {uses})")
        return calibration

    def convert(self, name: str, **changes: Any) -> Artifact:
        """Run target `name` on this job (options changed by `changes`), without the agreement check."""
        job = replace(self.derive(**changes) if changes else self, target=name)
        target = lookup(name)
        check_batch(name, job.options)
        job.options.out_dir.mkdir(parents=True, exist_ok=True)
        return target.convert(job)

    def run(self, name: str, **changes: Any) -> Artifact:
        """Run target `name`, then (options.check) check the artifact against its float source and say how it
        agreed; return the Artifact with the check. Raises what the target raises (EdgeportError)."""
        lookup(name)
        job = self.derive(**changes) if changes else self
        artifact = job.convert(name)
        if BY_NAME[name].frigate:  # the Frigate config folder, or one line saying why there is none
            artifact = importlib.import_module("edgeport.convert.frigate").write_frigate(artifact, job.say, name, job=job)
        if not job.options.check:
            return artifact
        from edgeport.convert.verify import describe, verify_artifact

        check = verify_artifact(artifact, job.source, job.options.imgsz, job.options.data)
        job.say(f"{name}: {describe(check)}")
        return replace(artifact, check=check)

    def run_many(self, names: list[str]) -> ManyResult:
        """Each (target, precision) of `plan` into options.out_dir; never stops at one failure: a missing
        dependency or a batch a target cannot bake in is skipped, any other error is a failure."""
        result, say = ManyResult(), self.say
        calibrated = self.options.data is not None
        for name in names:
            if BY_NAME[name].default == "int8" and not calibrated:
                result.skipped.append((name, "int8", "needs calibration images: pass --data"))
                say(f"convert: skipped {name}: it is integer-only and needs calibration images (--data)")
        for name, precision in plan(names, calibrated):
            say(f"convert: [{name} {precision}]")
            try:
                check_batch(name, replace(self.options, precision=precision))
            except ConversionError as exc:
                result.skipped.append((name, precision, str(exc)))
                say(f"convert: skipped {name} {precision}: {exc}")
                continue
            try:
                result.artifacts.append(self.run(name, precision=precision))
            except MissingDependencyError as exc:
                result.skipped.append((name, precision, str(exc)))
                say(f"convert: skipped {name} {precision}: {exc}")
            except EdgeportError as exc:
                result.failed.append((name, precision, str(exc)))
                say(f"edgeport: error: {name} {precision}: {exc}")
        return result


@dataclass
class ManyResult:
    """What `Job.run_many` wrote, skipped (missing dependency) and failed (with the error)."""

    artifacts: list = field(default_factory=list)
    skipped: list[tuple[str, str, str]] = field(default_factory=list)
    failed: list[tuple[str, str, str]] = field(default_factory=list)


def lookup(name: str) -> Target:
    """The registered Target `name`; raises ConversionError naming the known ones."""
    if name not in BY_NAME:
        raise ConversionError(f"unknown target {name!r}; choose one of: {', '.join(sorted(BY_NAME))}")
    return BY_NAME[name]


def write_record(path: Path, record: ArtifactRecord, onnx_model: Any = None,
                 sidecar: bool | None = None) -> Path | None:
    """Write `record` for the artifact at `path`, the one way every target does: embedded in an ONNX
    ModelProto's metadata_props (then the model is saved to `path`) and/or as the sidecar
    <stem>.edgeport.json (default: the sidecar when there is no ONNX model to embed it in); return the
    sidecar's path, or None."""
    if onnx_model is not None:
        import json

        import onnx

        from edgeport.artifact import METADATA_KEY

        del onnx_model.metadata_props[:]
        for key, value in {METADATA_KEY: record.to_json(), "names": json.dumps(list(record.names))}.items():
            entry = onnx_model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(onnx_model, str(path))
    if sidecar if sidecar is not None else onnx_model is None:
        return write_sidecar(path, record)
    return None
