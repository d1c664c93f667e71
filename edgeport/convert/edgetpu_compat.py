"""Which ops of an integer .tflite will map to the Edge TPU, and where the CPU fallback starts (conversion-time work).

The compiler maps ops in graph order until the first op it cannot run; from there on every op
runs on the CPU (its default, single-subgraph behaviour). This module predicts that from the
flatbuffer alone, so the answer is there even where `edgetpu_compiler` is not installed. Ops left in
float (accuracy control keeps blocks after the TPU part in float) are CPU ops like any other.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgeport.convert.tflite_ops import OpInfo, list_ops

# Builtin ops the Edge TPU compiler can map (Coral's "supported operations" table).
EDGETPU_OPS = frozenset({
    "ADD", "AVERAGE_POOL_2D", "CONCATENATION", "CONV_2D", "DEPTHWISE_CONV_2D", "EXPAND_DIMS",
    "FULLY_CONNECTED", "L2_NORMALIZATION", "LOGISTIC", "UNIDIRECTIONAL_SEQUENCE_LSTM", "MAXIMUM",
    "MAX_POOL_2D", "MEAN", "MINIMUM", "MUL", "PACK", "PAD", "PRELU", "QUANTIZE", "REDUCE_MAX", "REDUCE_MIN",
    "RELU", "RELU6", "RELU_N1_TO_1", "RESHAPE", "RESIZE_BILINEAR", "RESIZE_NEAREST_NEIGHBOR", "RSQRT", "SLICE",
    "SOFTMAX", "SPACE_TO_DEPTH", "SPLIT", "SQUEEZE", "STRIDED_SLICE", "SUB", "SUM", "SQUARED_DIFFERENCE", "TANH",
    "TRANSPOSE", "TRANSPOSE_CONV", "HARD_SWISH",
})
INTEGER_TYPES = ("INT8", "UINT8", "INT32", "-")


@dataclass
class OpVerdict:
    index: int
    name: str
    device: str  # "edgetpu" or "cpu"
    reason: str = ""


@dataclass
class CompatReport:
    """The predicted mapping of one model."""

    model: str
    total_ops: int
    edgetpu_ops: int
    cpu_ops: int
    first_cpu_op: OpVerdict | None
    ops: list[OpVerdict] = field(default_factory=list)
    compiled: bool = False
    compiler_log: dict | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> str:
        head = f"edgetpu: {self.edgetpu_ops}/{self.total_ops} ops map to the Edge TPU"
        if self.first_cpu_op is None:
            return head + " (the whole graph)"
        op = self.first_cpu_op
        return head + f"; CPU from op {op.index} ({op.name}: {op.reason}) onward, {self.cpu_ops} ops"


def op_problem(op: OpInfo) -> str:
    """Why an op cannot run on the Edge TPU, or '' when it can."""
    if op.name not in EDGETPU_OPS:
        return "not supported by the Edge TPU"
    other = [(name, dtype) for name, dtype in op.inputs + op.outputs if dtype not in INTEGER_TYPES]
    if other:
        name, dtype = other[0]
        kind = "int16 tensor (the Edge TPU runs 8-bit only)" if dtype == "INT16" else f"non-integer tensor ({dtype})"
        return f"{kind} {name!r}"
    for shape in op.output_shapes:
        if len(shape) > 4:
            return f"{len(shape)}-D tensor (at most 4-D)"
        if shape and shape[0] not in (1, -1) and len(shape) == 4:
            return f"batch {shape[0]} (batch 1 only)"
        if any(d < 0 for d in shape):
            return "dynamic shape"
    return ""


def analyze(path: str | Path) -> CompatReport:
    """Predict the Edge TPU mapping of a .tflite, op by op."""
    verdicts: list[OpVerdict] = []
    fallback: OpVerdict | None = None
    for op in list_ops(path):
        problem = op_problem(op)
        if fallback is None and problem:
            fallback = OpVerdict(op.index, op.name, "cpu", problem)
            verdicts.append(fallback)
            continue
        if fallback is not None:
            verdicts.append(OpVerdict(op.index, op.name, "cpu", problem or "after the first CPU op"))
        else:
            verdicts.append(OpVerdict(op.index, op.name, "edgetpu"))
    mapped = sum(v.device == "edgetpu" for v in verdicts)
    return CompatReport(model=str(path), total_ops=len(verdicts), edgetpu_ops=mapped,
                        cpu_ops=len(verdicts) - mapped, first_cpu_op=fallback, ops=verdicts)
