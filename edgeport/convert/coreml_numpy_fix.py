"""A corrected torch `int`/`bool` translation for coremltools 9.0 under numpy >= 2.4, installed in the
CoreML worker process only (never imported by edgeport's own process).

coremltools 9.0 folds a traced `aten::Int` of a constant with `int(x.val)`; attention blocks
(`N = H * W`) hand it a 1-element array, which numpy 2.4 refuses ("only 0-dimensional arrays can
be converted to Python scalars"). This translation takes the array's single element first.
"""

from __future__ import annotations

import numpy as np

TRANSLATED_OPS = ("int", "bool")


def _cast_scalar(context, node, dtype: type, dtype_name: str) -> None:
    """Cast a scalar or a (1, ..., 1) tensor to `dtype`: a constant is folded through its single
    element, anything else becomes squeeze + cast. Raises ValueError for a larger tensor."""
    from coremltools.converters.mil import Builder as mb
    from coremltools.converters.mil.frontend.torch.ops import _get_inputs

    (x,) = _get_inputs(context, node, expected=1)
    if not (len(x.shape) == 0 or all(d == 1 for d in x.shape)):
        raise ValueError(f"{node.name}: input to {dtype_name} cast must be a scalar or a length 1 tensor, "
                         f"got shape {x.shape}")
    if x.can_be_folded_to_const():
        value = x.val
        result = x if isinstance(value, dtype) else mb.const(val=dtype(np.asarray(value).item()), name=node.name)
    else:
        if len(x.shape) > 0:
            x = mb.squeeze(x=x, name=node.name + "_item")
        result = mb.cast(x=x, dtype=dtype_name, name=node.name)
    context.add(result, node.name)


def install() -> tuple[str, ...]:
    """Register the corrected `int` and `bool` translations in coremltools' torch frontend (this
    process only); return the torch op names now translated by it."""
    from coremltools.converters.mil.frontend.torch.torch_op_registry import register_torch_op

    def _int(context, node):
        _cast_scalar(context, node, int, "int32")

    def _bool(context, node):
        _cast_scalar(context, node, bool, "bool")

    register_torch_op(_int, torch_alias=["int"], override=True)
    register_torch_op(_bool, torch_alias=["bool"], override=True)
    return TRANSLATED_OPS
