"""Converters (the heavy, workstation side): one module per target behind one `convert(job)` shape.

A `Job` (edgeport.convert.job) runs one source to one or more targets: it builds the calibration set
once, reports progress one way, writes records one way and checks each artifact against its float
source. Each target module is imported only when chosen, so `edgeport --help` stays fast.
"""

from __future__ import annotations

from pathlib import Path

from edgeport.convert.base import Artifact, ConvertOptions, batch_suffix, check_source
from edgeport.convert.job import Job, ManyResult, lookup
from edgeport.convert.options import CoremlOptions, EdgeTpuOptions, OnnxWebOptions, RknnOptions, TfliteOptions
from edgeport.convert.targets import REGISTRY, check_batch, refuse_foreign, set_flags

__all__ = ["Artifact", "ConvertOptions", "CoremlOptions", "EdgeTpuOptions", "Job", "ManyResult", "OnnxWebOptions",
           "RknnOptions", "TARGETS", "TfliteOptions", "batch_suffix", "check_source", "convert"]

# target -> "module:function" (function(job) -> Artifact); the registry (edgeport.convert.targets) is the source
TARGETS: dict[str, str] = {target.name: target.entry for target in REGISTRY}


def convert(model: str | Path, target: str, options: ConvertOptions = ConvertOptions()) -> Artifact:
    """Convert one detector to `target` (its own options: the one of its type in options.own), check the
    written artifact against its float source on sample images (options.check); return the Artifact.

    Raises ConversionError for an unknown target, another target's option set in options.own, a failed step
    or an artifact that disagrees with its source, ModelNotFoundError, UnsupportedModelError,
    MissingDependencyError.
    """
    lookup(target)
    refuse_foreign([target], [flag for own in options.own for flag in set_flags(own)])
    check_batch(target, options)
    return Job.of(model, options).run(target)
