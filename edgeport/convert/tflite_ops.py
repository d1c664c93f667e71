"""Read a .tflite flatbuffer: every op with its tensor dtypes, and which ops compute in float."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

FLOAT_TYPES = ("FLOAT32", "FLOAT16", "FLOAT64")


@dataclass(frozen=True)
class OpInfo:
    """One operator: index, builtin name, and (name, dtype) of its input and output tensors."""

    index: int
    name: str
    inputs: tuple[tuple[str, str], ...]
    outputs: tuple[tuple[str, str], ...]
    output_shapes: tuple[tuple[int, ...], ...] = ()

    @property
    def computes_in_float(self) -> bool:
        """True for a compute op touching float tensors (boundary QUANTIZE/DEQUANTIZE excluded)."""
        if self.name in ("QUANTIZE", "DEQUANTIZE"):
            return False
        return any(dtype in FLOAT_TYPES for _, dtype in self.inputs + self.outputs)


def list_ops(path: str | Path) -> list[OpInfo]:
    """Return the operators of the main subgraph of a .tflite file."""
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    op_names = {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_")}
    type_names = {v: k for k, v in vars(schema.TensorType).items() if not k.startswith("_")}
    model = flatbuffer_utils.read_model(str(path))
    graph = model.subgraphs[0]

    def tensor(i: int) -> tuple[str, str]:
        if i < 0:
            return ("", "-")
        t = graph.tensors[i]
        name = t.name.decode() if isinstance(t.name, bytes) else str(t.name)
        return name, type_names.get(t.type, str(t.type))

    ops = []
    for index, op in enumerate(graph.operators or []):
        code = model.operatorCodes[op.opcodeIndex]
        builtin = flatbuffer_utils.get_builtin_code_from_operator_code(code)
        name = op_names.get(builtin, str(builtin))
        if name == "CUSTOM":
            custom = code.customCode
            name = "CUSTOM:" + (custom.decode() if isinstance(custom, bytes) else str(custom))
        shapes = tuple(tuple(int(d) for d in (graph.tensors[i].shape if graph.tensors[i].shape is not None else ()))
                       for i in op.outputs if i >= 0)
        ops.append(OpInfo(index, name, tuple(tensor(i) for i in op.inputs), tuple(tensor(i) for i in op.outputs),
                          shapes))
    return ops


def float_ops(path: str | Path) -> list[OpInfo]:
    """Ops that still compute in float: what keeps a model from being full-integer."""
    return [op for op in list_ops(path) if op.computes_in_float]


def op_summary(path: str | Path) -> dict[str, int]:
    """Count of each op type, most common first."""
    return dict(Counter(op.name for op in list_ops(path)).most_common())
