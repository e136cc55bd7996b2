"""Strided writes on the device: set/inc_subtensor with basic indices, alloc, concatenate.

Gradients of slices are IncSubtensor nodes (``zeros_like(x)`` with the
slice's gradient added in), and gradients of strided convolutions allocate
zeros to dilate into, so a training step has them on every call; without
this each one copies its tensors to the host and back.

An IncSubtensor's result is a fresh C-ordered copy of ``x`` with ``y``
written or added into the selection; an Alloc's is its value broadcast into
fresh memory; a Join's is each piece copied into its place. Every move is the same strided kernel, one per dtype:
``dst[i] = src[i]`` or ``dst[i] += src[i]`` over an up to 8-d shape with
byte strides for each side (0 where ``src`` broadcasts). A basic index never
selects one element twice, so the additions cannot race. The selection is
computed as in tracejit/cuda/views.py; integer additions wrap, as NumPy's
do, through unsigned arithmetic.
"""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

import numpy as np

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.kernel_ir import KernelProgram, PythonCall
from tracejit.cuda.views import basic_view
from tracejit.ops.indexing import IncSubtensor
from tracejit.ops.shape import Alloc, Join

UPDATE_MAX_DIMS = 8  # more dimensions: the node keeps its host round trip


def inc_subtensor_steps(program: KernelProgram) -> dict[int, str]:
    """Step number -> "inc_subtensor", for the basic IncSubtensor steps of ``program``."""
    return {number: "inc_subtensor" for number, _, node in program.python_calls()
            if isinstance(node.op, IncSubtensor) and not node.op.advanced and
            node.outputs[0].type.dtype in C_TYPES}


def alloc_steps(program: KernelProgram) -> dict[int, str]:
    """Step number -> "alloc", for the Alloc steps of ``program`` (any dtype the kernels copy)."""
    return {number: "alloc" for number, _, node in program.python_calls()
            if isinstance(node.op, Alloc) and node.outputs[0].type.dtype in C_TYPES}


def join_steps(program: KernelProgram) -> dict[int, str]:
    """Step number -> "join", for concatenations whose pieces all have the result's dtype."""
    return {number: "join" for number, _, node in program.python_calls()
            if isinstance(node.op, Join) and node.outputs[0].type.dtype in C_TYPES and
            all(i.type.dtype == node.outputs[0].type.dtype for i in node.inputs)}


def update_kernels(program: KernelProgram, prefix: str) -> tuple[str, dict[str, Any]]:
    """The strided update kernels of the dtypes ``program``'s IncSubtensor, Alloc, Join and
    scatter-add steps use: (source text, dtype -> KernelSpec)."""
    from tracejit.cuda.render import KernelSpec
    dims = range(UPDATE_MAX_DIMS)
    params = [("int64_t", "n"), ("int64_t", "nd"), ("int", "add"), ("char *", "dst"),
              ("const char *", "src")]
    params += [("int64_t", f"{kind}{d}") for kind in ("shape", "dst_st", "src_st") for d in dims]
    signature = ", ".join(f"{ctype} {name}" for ctype, name in params)
    from tracejit.cuda.gather import gather_steps
    # Scatter-adds (tracejit/cuda/gather.py) start from a copy made by these kernels too.
    scatters = [n for n, kind in gather_steps(program).items() if kind == "scatter_add"]
    dtypes = sorted({program.python_nodes[program.steps[n].callback].outputs[0].type.dtype
                     for n in [*inc_subtensor_steps(program), *alloc_steps(program),
                               *join_steps(program), *scatters]})
    texts, specs = [], {}
    for dtype in dtypes:
        ctype = C_TYPES[dtype]
        kind = np.dtype(dtype).kind
        if kind in "iu":
            unsigned = "uint64_t" if np.dtype(dtype).itemsize == 8 else "uint32_t"
            added = f"({ctype})(({unsigned})*target + ({unsigned})value)"
        elif kind == "b":
            added = "(bool_t)(*target || value)"
        else:
            added = "*target + value"
        name = f"{prefix}_update_{dtype}"
        texts.append("\n".join([
            f'extern "C" __global__ void {name}({signature}) {{',
            *(f"    const int64_t {kind_}[{UPDATE_MAX_DIMS}] = "
              f"{{{', '.join(f'{kind_}{d}' for d in dims)}}};"
              for kind_ in ("shape", "dst_st", "src_st")),
            "    const int64_t step = (int64_t)blockDim.x * gridDim.x;",
            "    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; "
            "i += step) {",
            "        int64_t rest = i, to = 0, from = 0;",
            "        for (int64_t d = nd - 1; d >= 0; d--) {",
            "            const int64_t position = rest % shape[d];",
            "            to += position * dst_st[d];",
            "            from += position * src_st[d];",
            "            rest /= shape[d];",
            "        }",
            f"        {ctype} *target = ({ctype} *)(dst + to);",
            f"        const {ctype} value = *(const {ctype} *)(src + from);",
            f"        *target = add ? {added} : value;",
            "    }",
            "}"]))
        specs[dtype] = KernelSpec(name, tuple(params))
    return "\n\n".join(texts), specs


def _source_strides(y_shape: tuple, y_strides: tuple, target: tuple, site) -> list[int]:
    """``y``'s byte strides read over ``target`` (NumPy's assignment broadcasting: leading
    length-1 dimensions dropped, length 1 repeated), or NumPy's ValueError."""
    shape, strides = list(y_shape), list(y_strides)
    while len(shape) > len(target) and shape[0] == 1:
        shape.pop(0)
        strides.pop(0)
    problem = len(shape) > len(target)
    aligned = [0] * (len(target) - len(shape))
    for length, stride, wanted in zip(shape, strides, target[len(target) - len(shape):]):
        problem = problem or length not in (1, wanted)
        aligned.append(0 if length == 1 else stride)
    if problem:
        raise ValueError(f"{site.op}: could not broadcast input array from shape "
                         f"{tuple(y_shape)} into shape {tuple(target)}{site.where}")
    return aligned


class DeviceStridedWrites:
    """The basic IncSubtensor, Alloc and Join steps of one CudaRunner."""

    def __init__(self, runner, specs: dict[str, Any]) -> None:
        self.runner = runner
        self.specs = specs

    def run(self, kind: str, step: PythonCall, node, values: dict, host_copies: dict, flag,
            launched: list) -> bool:
        if kind == "alloc":
            return self.alloc(step, values, host_copies, launched)
        if kind == "join":
            return self.join(step, node, values, launched)
        return self.inc_subtensor(step, node, values, host_copies, launched)

    def inc_subtensor(self, step: PythonCall, node, values: dict, host_copies: dict,
                      launched: list) -> bool:
        """Compute the step on the device; False (nothing done) above UPDATE_MAX_DIMS."""
        runner = self.runner
        x, y = (values[b.index] for b in step.inputs[:2])
        if len(x.shape) > UPDATE_MAX_DIMS:
            return False
        out = runner._empty(x.shape, x.dtype.name)
        self.copy_into(out, x, step.site, launched)
        index_values = [host_copies[b.index] if b.index in host_copies
                        else runner.to_host(values[b.index]) for b in step.inputs[2:]]
        selection = basic_view(out, node.op.spec, index_values, step.site)
        if len(selection.shape) > UPDATE_MAX_DIMS:
            return False
        source = _source_strides(y.shape, y.strides, selection.shape, step.site)
        self._launch(selection, y, selection.shape, source, not node.op.set_instead_of_inc,
                     step.site, launched)
        values[step.outputs[0].index] = out
        return True

    def alloc(self, step: PythonCall, values: dict, host_copies: dict, launched: list) -> bool:
        """Fill fresh memory with the value broadcast; False (nothing done) above
        UPDATE_MAX_DIMS or where the value does not broadcast (the reference raises)."""
        runner = self.runner
        value = values[step.inputs[0].index]
        shape = tuple(int(host_copies[b.index] if b.index in host_copies
                          else runner.to_host(values[b.index])) for b in step.inputs[1:])
        if len(shape) > UPDATE_MAX_DIMS or any(n < 0 for n in shape):
            return False
        try:
            source = _source_strides(value.shape, value.strides, shape, step.site)
        except ValueError:
            return False
        out = runner._empty(shape, step.outputs[0].dtype)
        self._launch(out, value, shape, source, False, step.site, launched)
        values[step.outputs[0].index] = out
        return True

    def join(self, step: PythonCall, node, values: dict, launched: list) -> bool:
        """Copy each piece into its place in fresh memory; False (nothing done) above
        UPDATE_MAX_DIMS or for shapes the reference rejects (it raises)."""
        pieces = [values[b.index] for b in step.inputs]
        axis, first = node.op.axis, pieces[0].shape
        if len(first) > UPDATE_MAX_DIMS or any(
                len(p.shape) != len(first) or
                any(n != m for d, (n, m) in enumerate(zip(p.shape, first)) if d != axis)
                for p in pieces):
            return False
        shape = list(first)
        shape[axis] = sum(p.shape[axis] for p in pieces)
        out = self.runner._empty(shape, step.outputs[0].dtype)
        offset = 0
        for piece in pieces:
            place = replace(out, ptr=out.ptr + offset * out.strides[axis], shape=piece.shape)
            self.copy_into(place, piece, step.site, launched)
            offset += piece.shape[axis]
        values[step.outputs[0].index] = out
        return True

    def copy_into(self, dst, src, site, launched: list) -> None:
        """Copy ``src`` into ``dst`` (same shape and dtype, any strides) on the device."""
        self._launch(dst, src, src.shape, src.strides, False, site, launched)

    def _launch(self, dst, src, shape, src_strides, add: bool, site, launched: list) -> None:
        total = math.prod(shape)
        if total == 0:
            return
        args = {"n": total, "nd": len(shape), "add": int(add), "dst": dst.ptr, "src": src.ptr}
        for d in range(UPDATE_MAX_DIMS):
            inside = d < len(shape)
            args[f"shape{d}"] = shape[d] if inside else 1
            args[f"dst_st{d}"] = dst.strides[d] if inside else 0
            args[f"src_st{d}"] = src_strides[d] if inside else 0
        device = self.runner.device
        grid = max(1, min(-(-total // device.block_size), device.max_blocks))
        self.runner._launch(self.specs[dst.dtype.name], grid, device.block_size, args, site,
                            launched)

