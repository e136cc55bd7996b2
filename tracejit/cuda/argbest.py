"""argmax and argmin on the device: one block per row.

An accuracy computed every step (``T.argmax(p, axis=1)``) would otherwise
copy the whole input to the host on each call. As for softmax rows
(tracejit/cuda/rows.py), a row is the reduced axis: the input is packed with
that axis last unless it already lies in contiguous rows (``axis=None`` reads
the whole array in C order as one row), and row r of the result is the r-th
position of the other axes in C order, which is the result's own layout. The
kernel (``tj_arg_rows`` in tracejit/cuda/prelude.py) keeps NumPy's answers:
the first extreme, and for floats the first NaN. An empty axis takes the
host round trip, whose reference raises NumPy's error.
"""

from __future__ import annotations

import math
from typing import Any

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.kernel_ir import KernelProgram, PythonCall
from tracejit.cuda.views import c_ordered
from tracejit.ops.reduce import Argmax

MAX_BLOCK = 1024            # the kernel's shared candidate arrays


def arg_steps(program: KernelProgram) -> dict[int, str]:
    """Step number -> "argmax"/"argmin", for the Argmax steps of ``program``."""
    return {number: f"arg{node.op.kind}" for number, _, node in program.python_calls()
            if isinstance(node.op, Argmax) and node.inputs[0].type.dtype in C_TYPES}


def arg_kernels(program: KernelProgram, prefix: str) -> tuple[str, dict[str, Any]]:
    """The row kernels ``program``'s Argmax steps use: (source text, "<kind>_<dtype>" ->
    KernelSpec)."""
    from tracejit.cuda.render import KernelSpec
    params = (("char *", "out"), ("const char *", "in"), ("int64_t", "rows"), ("int64_t", "n"))
    signature = ", ".join(f"{ctype} {name}" for ctype, name in params)
    wanted = sorted({(program.python_nodes[program.steps[number].callback].op.kind,
                      program.python_nodes[program.steps[number].callback].inputs[0].type.dtype)
                     for number in arg_steps(program)})
    texts, specs = [], {}
    for kind, dtype in wanted:
        name = f"{prefix}_arg{kind}_{dtype}"
        texts.append(f'extern "C" __global__ void {name}({signature}) {{\n'
                     f"    tj_arg_rows<{C_TYPES[dtype]}, {str(kind == 'max').lower()}>"
                     f"(out, in, rows, n);\n}}")
        specs[f"{kind}_{dtype}"] = KernelSpec(name, params)
    return "\n\n".join(texts), specs


class DeviceArgs:
    """The Argmax/Argmin steps of one CudaRunner."""

    def __init__(self, runner, products, specs: dict[str, Any]) -> None:
        self.runner = runner
        self.products = products  # for its strided copy kernel
        self.specs = specs

    def run(self, kind: str, step: PythonCall, node, values: dict, host_copies: dict, flag,
            launched: list) -> bool:
        """Compute the step; False (nothing done) for an empty axis (the reference raises)."""
        runner, site = self.runner, step.site
        x = values[step.inputs[0].index]
        ndim, axis = len(x.shape), node.op.axis
        if axis is None:
            order, kept = list(range(ndim)), ()
            n = math.prod(x.shape)
        else:
            order = [d for d in range(ndim) if d != axis] + [axis]
            kept = tuple(x.shape[d] for d in order[:-1])
            n = x.shape[axis]
        rows = math.prod(kept)
        if n == 0:
            return False
        out = runner._empty(kept, "int64")
        if rows:
            last_axis = axis is None or axis == ndim - 1
            if not (last_axis and c_ordered(x)):
                x = self.products.pack(x, order, site, launched)
            device = runner.device
            runner._launch(self.specs[f"{node.op.kind}_{x.dtype.name}"],
                           max(1, min(rows, device.max_blocks)),
                           min(device.block_size, MAX_BLOCK),
                           {"out": out.ptr, "in": x.ptr, "rows": rows, "n": n}, site, launched)
            self.products.release_packed(launched)
        values[step.outputs[0].index] = out
        return True
