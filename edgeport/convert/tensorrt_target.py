"""TensorRT target: the ONNX a Jetson builds its engine from (fp32, fp16, or explicit int8 QDQ).

Static shapes, float32 I/O, split head; int8 is symmetric (zero points 0) with per-channel weights
and Q/DQ on convolution inputs only. The engine itself is built on the device
(`edgeport jetson build-engine`); here the ONNX is measured in onnxruntime as the engine's proxy.
"""

from __future__ import annotations

from edgeport.convert.base import Artifact
from edgeport.convert.job import Job, write_record

PROXY_LABEL = {
    "fp32": "the fp32 ONNX TensorRT builds the engine from, run in onnxruntime (CPU)",
    "fp16": "the fp16 ONNX TensorRT builds the engine from, run in onnxruntime (CPU)",
    "int8": "the int8 QDQ ONNX TensorRT builds the engine from, run in onnxruntime (CPU)",
}


def convert_tensorrt(job: Job) -> Artifact:
    """Write DIR/<stem>_trt_<precision>.onnx with its record embedded; return the Artifact."""
    from edgeport.convert import onnx_quant
    from edgeport.convert.onnx_target import model_at_precision, split_record

    options = job.options
    model, names, prov = model_at_precision(job, "tensorrt", onnx_quant.TENSORRT)
    out = options.out_dir / f"{options.name or job.source.stem}_trt_{options.precision}.onnx"
    flag = {"fp32": "", "fp16": " --fp16", "int8": " --int8"}[options.precision]
    prov = {**prov, "proxy": {"artifact": out.name, "label": PROXY_LABEL[options.precision]},
            "engine_build": f"edgeport jetson build-engine {out.name}{flag}"}
    record = split_record(model, names, "tensorrt", options.precision, prov)
    write_record(out, record, onnx_model=model)
    job.say(f"tensorrt: wrote {out} ({out.stat().st_size / 1e6:.1f} MB); on the Jetson: {prov['engine_build']}")
    return Artifact(path=out, record=record)
