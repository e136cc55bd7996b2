"""Softmax and log-softmax on the device: one block per row.

The stability rewrites turn a hand-written softmax into a ``Softmax`` op
(tracejit/ops/nnet.py). The C backend has a native kernel for it; without
one here it would make a host round trip. A row is the softmax axis: the
runner packs the input with that axis last (the strided copy kernel of
tracejit/cuda/gemm.py) unless it already lies in contiguous rows, and the
output is returned as a view in the input's axis order.

Each block takes rows in a grid-stride loop and follows the NumPy
reference step for step: the row's max (NaN wins, as in ``np.max``; an
infinite max counts as 0), the block sum of ``exp(x - max)`` (accumulated
in double for float32, as the C backend's sums are), then ``exp(x - max) /
sum`` or ``x - max - log(sum)``. Only float32/float64 inputs of the
output's dtype run here; an integer input keeps the host round trip.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from tracejit.codegen.kernel_ir import KernelProgram, PythonCall
from tracejit.cuda.views import c_ordered
from tracejit.ops.nnet import Softmax

ROW_DTYPES = {"float32": ("float", "double"), "float64": ("double", "double")}


def softmax_steps(program: KernelProgram) -> dict[int, str]:
    """Step number -> "softmax", for the Softmax steps of ``program`` a row kernel computes."""
    return {number: "softmax" for number, _, node in program.python_calls()
            if isinstance(node.op, Softmax) and node.outputs[0].type.dtype in ROW_DTYPES and
            node.inputs[0].type.dtype == node.outputs[0].type.dtype}


def softmax_kernels(prefix: str) -> tuple[str, dict[str, Any]]:
    """The row kernels, one per dtype: (source text, dtype -> KernelSpec)."""
    from tracejit.cuda.render import KernelSpec
    params = (("char *", "out"), ("const char *", "in"), ("int64_t", "rows"),
              ("int64_t", "n"), ("int", "log_output"))
    signature = ", ".join(f"{ctype} {name}" for ctype, name in params)
    texts, specs = [], {}
    for dtype, (ctype, accumulator) in ROW_DTYPES.items():
        name = f"{prefix}_softmax_{dtype}"
        texts.append(f'extern "C" __global__ void {name}({signature}) {{\n'
                     f"    tj_softmax_rows<{ctype}, {accumulator}>(out, in, rows, n, log_output);\n"
                     f"}}")
        specs[dtype] = KernelSpec(name, params)
    return "\n\n".join(texts), specs


class DeviceRows:
    """The Softmax steps of one CudaRunner, computed by the row kernels."""

    def __init__(self, runner, products, specs: dict[str, Any]) -> None:
        self.runner = runner
        self.products = products  # for its strided copy kernel
        self.specs = specs

    def run(self, kind: str, step: PythonCall, node, values: dict, host_copies: dict, flag,
            launched: list) -> bool:
        x = values[step.inputs[0].index]
        shape, axis, ndim = x.shape, node.op.axis, len(x.shape)
        runner, site = self.runner, step.site
        # The other axes in order, then the softmax axis: rows of n contiguous elements.
        order = [d for d in range(ndim) if d != axis] + [axis]
        n = shape[axis]
        rows = math.prod(shape) // n if n else 0
        if rows and not (axis == ndim - 1 and c_ordered(x)):
            x = self.products.pack(x, order, site, launched)
        out = runner._empty([shape[d] for d in order], x.dtype.name)
        if rows:
            device = runner.device
            args = {"out": out.ptr, "in": x.ptr, "rows": rows, "n": n,
                    "log_output": int(node.op.log)}
            runner._launch(self.specs[x.dtype.name], max(1, min(rows, device.max_blocks)),
                           device.block_size, args, site, launched)
        self.products.release_packed(launched)
        # Back in the input's axis order: a view of the packed result.
        strides = [0] * ndim
        for position, d in enumerate(order):
            strides[d] = out.strides[position]
        values[step.outputs[0].index] = replace(out, shape=tuple(shape), strides=tuple(strides))
        return True
