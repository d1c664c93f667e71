"""Edge TPU target: the int8 TFLite (full-integer, or with blocks kept in float by accuracy control after the
TPU part), its op-by-op Edge TPU analysis, and the compiled `*_edgetpu.tflite` when `edgetpu_compiler` is on PATH."""

from __future__ import annotations

import json
from dataclasses import replace

from edgeport.convert.base import Artifact
from edgeport.convert.edgetpu_compat import analyze
from edgeport.convert.job import Job, write_record
from edgeport.convert.options import TfliteOptions
from edgeport.devices.coral.compiler import compile_model
from edgeport.errors import ConversionError


def convert_edgetpu(job: Job) -> Artifact:
    """Write the Edge TPU-ready int8 model, DIR/<name>_edgetpu_compat.json and, when the compiler is
    installed, DIR/<name>_edgetpu.tflite (returned then; else the uncompiled int8 model)."""
    options, say, io = job.options, job.say, job.target_options.io
    if io == "float":
        raise ConversionError("edgetpu: the Edge TPU needs integer input and output; use --io uint8 or int8")
    int8 = job.convert("tflite", precision="int8", own=(TfliteOptions(io=io, edgetpu=True),))
    report = analyze(int8.path)
    say(report.summary())
    kept = (int8.record.provenance.get("accuracy_control") or {}).get("float_blocks") or []
    if kept:
        say(f"edgetpu: int8 on the Edge TPU part; {len(kept)} blocks kept in float for accuracy run on the CPU after "
            f"it ({', '.join(kept[:6])}{', ...' if len(kept) > 6 else ''})")
    compiled, log, message = compile_model(int8.path, options.out_dir)
    say(message)
    report.compiled, report.compiler_log = compiled is not None, log
    report_path = options.out_dir / f"{int8.path.stem}_edgetpu_compat.json"
    report_path.write_text(json.dumps(report.to_dict(), indent=2))
    analysis = {"edgetpu_ops": report.edgetpu_ops, "cpu_ops": report.cpu_ops, "compiled": report.compiled,
                "float_blocks_on_cpu": len(kept),
                "first_cpu_op": None if report.first_cpu_op is None else
                f"{report.first_cpu_op.index}:{report.first_cpu_op.name} ({report.first_cpu_op.reason})"}
    record = replace(int8.record, provenance={**int8.record.provenance, "edgetpu": analysis})
    if compiled is None:
        write_record(int8.path, record)
        return Artifact(int8.path, record, extra_files=(report_path,))
    record = replace(record, target="edgetpu")
    write_record(compiled, record)
    return Artifact(compiled, record, extra_files=(report_path, int8.path))
