"""Integer-array indexing on the device: gathers and their gradients' scatter-adds.

``log_p[T.arange(n), t]`` (the negative log-likelihood of every Theano
classifier) and embedding lookups ``E[ids]`` index the leading axes with
integer arrays; their gradients add back into those positions
(``np.add.at``). Without these kernels each one copies both tensors to the
host and back on every call.

Covered: one or two integer index arrays (int64, as ``arange`` and label
vectors are) on the leading axes, followed only by full slices. The index
arrays broadcast together to a shape B; the result has shape
B + x.shape[k:]. Each kernel walks the output (or the value added) in C
order over up to 8 dimensions, with byte strides per dimension for the data
and for each index array (0 where an index array broadcasts). A negative
index counts from the end; an index out of range sets the error flag and
nothing is written there. The runner then runs the node's NumPy reference,
which raises NumPy's IndexError (axis, index and length).

Scatter-adds use ``atomicAdd`` (float32; float64 on sm_60 and later), so
repeated indices accumulate as ``np.add.at`` does, in an unspecified
order: float sums may differ from NumPy's in the last bits. Other index
patterns and ``set_subtensor`` through index arrays keep the host round trip.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tracejit.codegen.kernel_ir import KernelProgram, PythonCall
from tracejit.ops.indexing import IncSubtensor, Subtensor

GATHER_MAX_DIMS = 8
MAX_INDEX_ARRAYS = 2
SCATTER_DTYPES = {"float32": "float", "float64": "double"}


def _pattern(spec: tuple) -> int | None:
    """How many leading index arrays ``spec`` has when the rest are full slices, else None."""
    arrays = 0
    while arrays < len(spec) and spec[arrays][0] == "array":
        arrays += 1
    rest = spec[arrays:]
    if not 1 <= arrays <= MAX_INDEX_ARRAYS or \
            any(entry != ("slice", None, None, None) for entry in rest):
        return None
    return arrays


def gather_steps(program: KernelProgram) -> dict[int, str]:
    """Step number -> "gather" or "scatter_add", for the steps these kernels compute."""
    found = {}
    for number, _, node in program.python_calls():
        op = node.op
        if not isinstance(op, (Subtensor, IncSubtensor)) or not op.advanced:
            continue
        arrays = _pattern(op.spec)
        first_index = 1 if isinstance(op, Subtensor) else 2
        indices = node.inputs[first_index:]
        if arrays is None or len(indices) != arrays or \
                any(i.type.dtype != "int64" for i in indices) or \
                node.outputs[0].ndim > GATHER_MAX_DIMS:
            continue
        if isinstance(op, Subtensor):
            found[number] = "gather"
        elif not op.set_instead_of_inc and node.outputs[0].type.dtype in SCATTER_DTYPES:
            found[number] = "scatter_add"
    return found


def _params() -> tuple:
    dims = range(GATHER_MAX_DIMS)
    params = [("int64_t", "n"), ("int64_t", "nd"), ("int64_t", "k"), ("int *", "bad"),
              ("char *", "dst"), ("const char *", "src"), ("const char *", "index0"),
              ("const char *", "index1"), ("int64_t", "length0"), ("int64_t", "length1"),
              ("int64_t", "axis_st0"), ("int64_t", "axis_st1")]
    for kind in ("shape", "dst_st", "src_st", "index0_st", "index1_st"):
        params += [("int64_t", f"{kind}{d}") for d in dims]
    return tuple(params)


def _body(name: str, element: str, store: str) -> str:
    """One kernel: ``element`` is the moved item type, ``store`` the statement writing one."""
    dims = range(GATHER_MAX_DIMS)
    signature = ", ".join(f"{ctype} {pname}" for ctype, pname in _params())
    arrays = "\n".join(f"    const int64_t {kind}[{GATHER_MAX_DIMS}] = "
                       f"{{{', '.join(f'{kind}{d}' for d in dims)}}};"
                       for kind in ("shape", "dst_st", "src_st", "index0_st", "index1_st"))
    return f"""extern "C" __global__ void {name}({signature}) {{
{arrays}
    const int64_t step = (int64_t)blockDim.x * gridDim.x;
    int tj_bad = 0;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {{
        int64_t rest = i, to = 0, from = 0, at0 = 0, at1 = 0;
        for (int64_t d = nd - 1; d >= 0; d--) {{
            const int64_t position = rest % shape[d];
            to += position * dst_st[d];
            from += position * src_st[d];
            at0 += position * index0_st[d];
            at1 += position * index1_st[d];
            rest /= shape[d];
        }}
        int64_t j0 = *(const int64_t *)(index0 + at0);
        if (j0 < 0) j0 += length0;
        if (j0 < 0 || j0 >= length0) {{ tj_bad = 1; continue; }}
        int64_t offset = j0 * axis_st0;
        if (k > 1) {{
            int64_t j1 = *(const int64_t *)(index1 + at1);
            if (j1 < 0) j1 += length1;
            if (j1 < 0 || j1 >= length1) {{ tj_bad = 1; continue; }}
            offset += j1 * axis_st1;
        }}
        {element} *target;
        const {element} *source;
        {store}
    }}
    if (tj_bad) atomicOr(bad, 1);
}}"""


_GATHER_ITEMS = {1: "uint8_t", 2: "uint16_t", 4: "uint32_t", 8: "uint64_t"}


def gather_kernels(program: KernelProgram, prefix: str) -> tuple[str, dict[str, Any]]:
    """The kernels ``program``'s gather and scatter-add steps use: (source text,
    "gather<item size>" / "scatter_<dtype>" -> KernelSpec)."""
    from tracejit.cuda.render import KernelSpec
    wanted = set()
    for number, kind in gather_steps(program).items():
        node = program.python_nodes[program.steps[number].callback]
        dtype = np.dtype(node.outputs[0].type.dtype)
        wanted.add(f"gather{dtype.itemsize}" if kind == "gather" else f"scatter_{dtype.name}")
    texts, specs = [], {}
    for key in sorted(wanted):
        name = f"{prefix}_{key}"
        if key.startswith("gather"):
            element = _GATHER_ITEMS[int(key[len("gather"):])]
            store = ("target = (" + element + " *)(dst + to); "
                     "source = (const " + element + " *)(src + from + offset); *target = *source;")
        else:
            element = SCATTER_DTYPES[key[len("scatter_"):]]
            store = ("target = (" + element + " *)(dst + to + offset); "
                     "source = (const " + element + " *)(src + from); "
                     "atomicAdd(target, *source);")
        texts.append(_body(name, element, store))
        specs[key] = KernelSpec(name, _params())
    return "\n\n".join(texts), specs


class DeviceGathers:
    """The gather and scatter-add steps of one CudaRunner."""

    def __init__(self, runner, specs: dict[str, Any]) -> None:
        self.runner = runner
        self.specs = specs

    def run(self, kind: str, step: PythonCall, node, values: dict, host_copies: dict, flag,
            launched: list) -> bool:
        """Compute the step; False when an index was out of range (nothing usable was
        written: the caller runs the reference, which raises NumPy's error)."""
        runner = self.runner
        if kind == "gather":
            x, *indices = (values[b.index] for b in step.inputs)
        else:
            x, y, *indices = (values[b.index] for b in step.inputs)
        k = len(indices)
        try:
            batch = np.broadcast_shapes(*(i.shape for i in indices))
        except ValueError:
            return False  # the reference raises NumPy's shape mismatch
        rest = tuple(x.shape[k:])
        shape = tuple(batch) + rest
        if len(shape) > GATHER_MAX_DIMS or (0 in x.shape[:k] and math.prod(batch)):
            return False  # the reference raises for an index into an empty axis
        index_strides = [_aligned(i.shape, i.strides, batch) + [0] * len(rest) for i in indices]
        index_strides += [[0] * len(shape)] * (MAX_INDEX_ARRAYS - k)
        x_rest = [0] * len(batch) + list(x.strides[k:])
        lengths = list(x.shape[:k]) + [1] * (MAX_INDEX_ARRAYS - k)
        axis_strides = list(x.strides[:k]) + [0] * (MAX_INDEX_ARRAYS - k)
        if kind == "gather":
            out = runner._empty(shape, x.dtype.name)
            dst, dst_strides, src, src_strides = out, list(out.strides), x, x_rest
            spec = self.specs[f"gather{x.dtype.itemsize}"]
        else:
            out = runner._empty(x.shape, x.dtype.name)
            src_strides = _broadcast_value(y.shape, y.strides, shape)
            if src_strides is None:
                return False  # the reference raises NumPy's broadcasting error
            runner.updates.copy_into(out, x, step.site, launched)
            dst, dst_strides, src = out, [0] * len(batch) + list(out.strides[k:]), y
            axis_strides = list(out.strides[:k]) + [0] * (MAX_INDEX_ARRAYS - k)
            spec = self.specs[f"scatter_{x.dtype.name}"]
        total = math.prod(shape)
        if total:
            runner.device.zero(flag.ptr, 4)
            args = {"n": total, "nd": len(shape), "k": k, "bad": flag.ptr, "dst": dst.ptr,
                    "src": src.ptr, "index0": indices[0].ptr,
                    "index1": indices[1].ptr if k > 1 else indices[0].ptr,
                    "length0": lengths[0], "length1": lengths[1],
                    "axis_st0": axis_strides[0], "axis_st1": axis_strides[1]}
            for d in range(GATHER_MAX_DIMS):
                inside = d < len(shape)
                args[f"shape{d}"] = shape[d] if inside else 1
                args[f"dst_st{d}"] = dst_strides[d] if inside else 0
                args[f"src_st{d}"] = src_strides[d] if inside else 0
                args[f"index0_st{d}"] = index_strides[0][d] if inside else 0
                args[f"index1_st{d}"] = index_strides[1][d] if inside else 0
            device = runner.device
            grid = max(1, min(-(-total // device.block_size), device.max_blocks))
            runner._launch(spec, grid, device.block_size, args, step.site, launched)
            runner._synchronize(launched)
            if runner.to_host(flag)[0]:
                return False
        values[step.outputs[0].index] = out
        return True


def _aligned(shape: tuple, strides: tuple, target: tuple) -> list[int]:
    """Byte strides of an array broadcast (right-aligned) to ``target``."""
    pad = len(target) - len(shape)
    return [0] * pad + [0 if n == 1 else s for n, s in zip(shape, strides)]


def _broadcast_value(shape: tuple, strides: tuple, target: tuple) -> list[int] | None:
    """A value's byte strides read over ``target`` (NumPy's broadcasting), or None when it
    does not broadcast."""
    if len(shape) > len(target) or any(n not in (1, t) for n, t in
                                       zip(shape, target[len(target) - len(shape):])):
        return None
    return _aligned(shape, strides, target)
