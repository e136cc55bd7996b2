"""Matrix products on the device: matmul and tensordot as (batched, strided) gemm calls.

The C backend's native kernels (tracejit/codegen/native/linalg.py) decide,
per product, how BLAS can read each operand where it lies; this module makes
the same decisions for a ``Device``'s gemm (cuBLAS on a GPU, NumPy in the
emulator):

- a matrix whose strides are row-major or transposed row-major (``x.T``, a
  column slice, a 1-d operand) is passed as it is, with the transpose flag;
  anything else (negative strides, steps in both dimensions, a broadcast
  row) is first packed into a contiguous array by a small copy kernel;
- batched matmul is one strided-batched gemm over the innermost batch
  dimensions that share one stride per operand (a broadcast operand has
  stride 0), looping in Python over any others; when the right operand is
  shared by the whole batch and the left one's batch and rows are evenly
  strided (``x3d @ w``), the batch becomes the rows of a single product;
- tensordot collapses its free and contracted axes to one stride each when
  the layout allows and otherwise packs the operand in (free, contracted)
  order: then it is a single gemm.

Only float32/float64 operands of the result's dtype go to gemm (what cuBLAS
computes with NumPy's semantics); integer, bool and mixed-dtype products
keep their host round trip.

``GemmCall`` is row-major, like CBLAS with ``CblasRowMajor``: each device
converts it to its library's convention.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from tracejit.codegen.kernel_ir import ErrorSite, KernelProgram, PythonCall
from tracejit.ops.linalg import MatMul, TensorDot

GEMM_DTYPES = ("float32", "float64")
PACK_MAX_DIMS = 8          # operands of higher rank are packed through the host
PACK_ITEM_SIZES = (4, 8)   # what the copy kernel moves; others are packed through the host
INT32_MAX = 2**31 - 1      # cuBLAS takes sizes and leading dimensions as int


@dataclass(frozen=True)
class GemmOperand:
    """One operand of a row-major gemm.

    ``ld`` and ``batch_stride`` count elements. Not ``transposed``: the
    matrix is stored row-major as it is used (rows x cols, ``ld >= cols``);
    ``transposed``: its transpose is stored row-major (``ld >= rows``).
    ``batch_stride`` 0 reads the same matrix for every batch entry.
    """

    ptr: int
    transposed: bool
    ld: int
    batch_stride: int


@dataclass(frozen=True)
class GemmCall:
    """``C[i] = A[i] @ B[i]`` for ``i < batch``: A is m x k, B k x n, C m x n (row-major)."""

    dtype: str
    m: int
    n: int
    k: int
    batch: int
    a: GemmOperand
    b: GemmOperand
    c: GemmOperand


def gemm_kind(node) -> str | None:
    """"matmul" or "tensordot" when ``node`` can run as a device gemm, else None."""
    if not isinstance(node.op, (MatMul, TensorDot)):
        return None
    dtype = node.outputs[0].type.dtype
    if dtype not in GEMM_DTYPES or any(v.type.dtype != dtype for v in node.inputs):
        return None
    return "matmul" if isinstance(node.op, MatMul) else "tensordot"


def gemm_steps(program: KernelProgram) -> dict[int, str]:
    """Step number -> kind, for the steps of ``program`` a device gemm can compute."""
    found = {}
    for number, _, node in program.python_calls():
        kind = gemm_kind(node)
        if kind is not None:
            found[number] = kind
    return found


# -- the copy kernel ---------------------------------------------------------------------------

def pack_kernel(name: str) -> tuple[str, Any]:
    """A kernel copying an up to PACK_MAX_DIMS-d strided array of 4- or 8-byte items into
    C order: (source text, KernelSpec)."""
    from tracejit.cuda.render import KernelSpec
    dims = range(PACK_MAX_DIMS)
    params = [("int64_t", "n"), ("int64_t", "item"), ("int64_t", "nd"), ("char *", "out"),
              ("const char *", "in")]
    params += [("int64_t", f"shape{d}") for d in dims]
    params += [("int64_t", f"st{d}") for d in dims]
    signature = ", ".join(f"{ctype} {pname}" for ctype, pname in params)
    text = "\n".join([
        f'extern "C" __global__ void {name}({signature}) {{',
        f"    const int64_t shape[{PACK_MAX_DIMS}] = {{{', '.join(f'shape{d}' for d in dims)}}};",
        f"    const int64_t st[{PACK_MAX_DIMS}] = {{{', '.join(f'st{d}' for d in dims)}}};",
        "    const int64_t step = (int64_t)blockDim.x * gridDim.x;",
        "    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) {",
        "        int64_t rest = i, offset = 0;",
        "        for (int64_t d = nd - 1; d >= 0; d--) {",
        "            offset += (rest % shape[d]) * st[d];",
        "            rest /= shape[d];",
        "        }",
        "        if (item == 8) ((uint64_t *)out)[i] = *(const uint64_t *)(in + offset);",
        "        else ((uint32_t *)out)[i] = *(const uint32_t *)(in + offset);",
        "    }",
        "}"])
    return text, KernelSpec(name, tuple(params))


# -- layouts -----------------------------------------------------------------------------------

def blas_view(rows: int, cols: int, row_stride: int, col_stride: int,
              item: int) -> tuple[bool, int] | None:
    """(transposed, ld) when gemm can read a rows x cols matrix with these byte strides
    where it lies; None when it must be packed first (the C backend's tj_blas_view)."""
    if rows <= 1 and cols <= 1:
        return False, 1
    if rows <= 1:
        if col_stride <= 0 or col_stride % item:
            return None
        return (False, cols) if col_stride == item else (True, col_stride // item)
    if cols <= 1:
        if row_stride <= 0 or row_stride % item:
            return None
        return False, row_stride // item
    if col_stride == item and row_stride > 0 and row_stride % item == 0 \
            and row_stride // item >= cols:
        return False, row_stride // item
    if row_stride == item and col_stride > 0 and col_stride % item == 0 \
            and col_stride // item >= rows:
        return True, col_stride // item
    return None


def collapse(dims: Sequence[int], shape: Sequence[int], strides: Sequence[int],
             item: int) -> tuple[int, int] | None:
    """(length, byte stride) when walking ``dims`` in order is one evenly strided
    sequence (length-1 dimensions skipped), else None (the C backend's tj_collapse)."""
    length, stride, expected, seen = 1, item, 0, False
    for d in reversed(dims):
        length *= shape[d]
        if shape[d] == 1:
            continue
        if not seen:
            stride, expected, seen = strides[d], strides[d] * shape[d], True
        elif strides[d] != expected:
            return None
        else:
            expected *= shape[d]
    return length, stride


@dataclass
class _MatmulLayout:
    m: int
    k: int
    n: int
    rsa: int
    csa: int
    rsb: int
    csb: int
    batch_shape: list[int]
    batch_a: list[int]   # byte strides over the broadcast batch (0 where broadcast)
    batch_b: list[int]


def _shapes(a, b) -> str:
    return f"shapes {tuple(a.shape)} and {tuple(b.shape)}"


def _matmul_layout(a, b, site: ErrorSite) -> _MatmulLayout:
    nda, ndb = len(a.shape), len(b.shape)
    if nda == 1:
        m, k, rsa, csa = 1, a.shape[0], 0, a.strides[0]
    else:
        m, k = a.shape[-2:]
        rsa, csa = a.strides[-2:]
    if ndb == 1:
        kb, n, rsb, csb = b.shape[0], 1, b.strides[0], 0
    else:
        kb, n = b.shape[-2:]
        rsb, csb = b.strides[-2:]
    if k != kb:
        raise ValueError(f"{site.op}: matmul: inner dimensions differ ({k} != {kb}): "
                         f"{_shapes(a, b)}{site.where}")
    lead_a, lead_b = max(nda - 2, 0), max(ndb - 2, 0)
    nb = max(lead_a, lead_b)
    shape_a = [1] * (nb - lead_a) + list(a.shape[:lead_a])
    shape_b = [1] * (nb - lead_b) + list(b.shape[:lead_b])
    strides_a = [0] * (nb - lead_a) + list(a.strides[:lead_a])
    strides_b = [0] * (nb - lead_b) + list(b.strides[:lead_b])
    batch_shape, batch_a, batch_b = [], [], []
    for la, lb, sa, sb in zip(shape_a, shape_b, strides_a, strides_b):
        if la != lb and la != 1 and lb != 1:
            raise ValueError(f"{site.op}: matmul: batch dimensions could not be broadcast "
                             f"together: {_shapes(a, b)}{site.where}")
        batch_shape.append(lb if la == 1 else la)
        batch_a.append(0 if la == 1 else sa)
        batch_b.append(0 if lb == 1 else sb)
    return _MatmulLayout(m, k, n, rsa, csa, rsb, csb, batch_shape, batch_a, batch_b)


def _readable(view: tuple[bool, int] | None, batch_strides: Sequence[int], item: int) -> bool:
    return view is not None and all(s % item == 0 for s in batch_strides)


class DeviceProducts:
    """matmul/tensordot steps of one CudaRunner, computed by its device's ``gemm``."""

    def __init__(self, runner, pack_spec) -> None:
        self.runner = runner
        self.device = runner.device
        self.pack_spec = pack_spec
        self._scratch: list = []

    def run(self, kind: str, step: PythonCall, node, values: dict, host_copies: dict, flag,
            launched: list) -> bool:
        a, b = (values[buffer.index] for buffer in step.inputs)
        if kind == "matmul":
            result = self.matmul(a, b, step.site, launched)
        else:
            result = self.tensordot(a, b, node.op.axes_a, node.op.axes_b, step.site, launched)
        values[step.outputs[0].index] = result
        self.release_packed(launched)
        return True

    def hold_until_released(self, array) -> None:
        """Keep ``array`` (a scratch buffer a launched kernel reads) until ``release_packed``."""
        self._scratch.append(array)

    def release_packed(self, launched: list) -> None:
        """Free the packed copies made since the last call, once the kernels reading them
        have finished."""
        if self._scratch:
            self.runner._synchronize(launched)
            self._scratch.clear()

    # -- matmul --------------------------------------------------------------------------------
    def matmul(self, a, b, site: ErrorSite, launched: list):
        item = a.dtype.itemsize
        layout = _matmul_layout(a, b, site)
        oshape = list(layout.batch_shape)
        oshape += [layout.m] if len(a.shape) > 1 else []
        oshape += [layout.n] if len(b.shape) > 1 else []
        out = self.runner._empty(oshape, a.dtype.name)
        batch = math.prod(layout.batch_shape)
        m, n, k = layout.m, layout.n, layout.k
        if batch == 0 or m == 0 or n == 0:
            return out
        if k == 0:
            self.device.zero(out.ptr, batch * m * n * item)
            return out
        if not _readable(blas_view(m, k, layout.rsa, layout.csa, item), layout.batch_a, item):
            a = self.pack(a, range(len(a.shape)), site, launched)
        if not _readable(blas_view(k, n, layout.rsb, layout.csb, item), layout.batch_b, item):
            b = self.pack(b, range(len(b.shape)), site, launched)
        layout = _matmul_layout(a, b, site)
        view_b = blas_view(k, n, layout.rsb, layout.csb, item)
        single = self._as_single_product(a, layout, batch, item)
        if single is not None:
            rows, view_a = single
            self.gemm_call(site, launched, a.dtype.name, rows, n, k, 1,
                           GemmOperand(a.ptr, *view_a, 0), GemmOperand(b.ptr, *view_b, 0),
                           GemmOperand(out.ptr, False, n, 0))
            return out
        view_a = blas_view(m, k, layout.rsa, layout.csa, item)
        self._batched(site, launched, a, b, out, layout, view_a, view_b)
        return out

    @staticmethod
    def _as_single_product(a, layout: _MatmulLayout, batch: int, item: int):
        """(rows, view of A) when the whole batch is one product (one matrix, or a right
        operand shared by the batch and a left one whose batch and rows are evenly
        strided); else None."""
        m, k = layout.m, layout.k
        if batch == 1:
            return m, blas_view(m, k, layout.rsa, layout.csa, item)
        if len(a.shape) == 1 or any(s != 0 and length != 1 for s, length
                                    in zip(layout.batch_b, layout.batch_shape)):
            return None
        known, row_stride, expected = m > 1, layout.rsa, layout.rsa * m
        for length, stride in zip(reversed(layout.batch_shape), reversed(layout.batch_a)):
            if length == 1:
                continue
            if not known:
                row_stride, expected, known = stride, stride * length, True
                continue
            if stride != expected:
                return None
            expected *= length
        view = blas_view(m * batch, k, row_stride, layout.csa, item)
        return None if view is None else (m * batch, view)

    def _batched(self, site, launched, a, b, out, layout: _MatmulLayout, view_a, view_b) -> None:
        """One strided-batched gemm per index of the batch dimensions that do not collapse."""
        item = a.dtype.itemsize
        m, n, k = layout.m, layout.n, layout.k
        live = [d for d, length in enumerate(layout.batch_shape) if length != 1]
        inner: list[int] = []
        if live and layout.batch_a[live[-1]] >= 0 and layout.batch_b[live[-1]] >= 0:
            inner = [live[-1]]
            length = layout.batch_shape[live[-1]]
            stride_a, stride_b = layout.batch_a[live[-1]], layout.batch_b[live[-1]]
            for d in reversed(live[:-1]):
                if layout.batch_a[d] != stride_a * length or \
                        layout.batch_b[d] != stride_b * length:
                    break
                inner.insert(0, d)
                length *= layout.batch_shape[d]
        inner_count = math.prod(layout.batch_shape[d] for d in inner)
        stride_a = layout.batch_a[inner[-1]] // item if inner else 0
        stride_b = layout.batch_b[inner[-1]] // item if inner else 0
        outer = [d for d in live if d not in inner]
        for number, index in enumerate(itertools.product(
                *(range(layout.batch_shape[d]) for d in outer))):
            offset_a = sum(i * layout.batch_a[d] for i, d in zip(index, outer))
            offset_b = sum(i * layout.batch_b[d] for i, d in zip(index, outer))
            offset_c = number * inner_count * m * n * item
            self.gemm_call(site, launched, a.dtype.name, m, n, k, inner_count,
                           GemmOperand(a.ptr + offset_a, *view_a, stride_a),
                           GemmOperand(b.ptr + offset_b, *view_b, stride_b),
                           GemmOperand(out.ptr + offset_c, False, n, m * n))

    # -- tensordot -----------------------------------------------------------------------------
    def tensordot(self, a, b, axes_a: Sequence[int], axes_b: Sequence[int], site: ErrorSite,
                  launched: list):
        item = a.dtype.itemsize
        for i, j in zip(axes_a, axes_b):
            if a.shape[i] != b.shape[j]:
                raise ValueError(f"{site.op}: tensordot: shape-mismatch for sum: "
                                 f"{_shapes(a, b)}{site.where}")
        free_a = [d for d in range(len(a.shape)) if d not in axes_a]
        free_b = [d for d in range(len(b.shape)) if d not in axes_b]
        out = self.runner._empty([a.shape[d] for d in free_a] + [b.shape[d] for d in free_b],
                                 a.dtype.name)
        m = math.prod(a.shape[d] for d in free_a)
        n = math.prod(b.shape[d] for d in free_b)
        k = math.prod(a.shape[d] for d in axes_a)
        if m == 0 or n == 0:
            return out
        if k == 0:
            self.device.zero(out.ptr, m * n * item)
            return out
        view_a = self._collapsed_view(a, free_a, axes_a, m, k)
        if view_a is None:
            a = self.pack(a, free_a + list(axes_a), site, launched)
            view_a = blas_view(m, k, k * item, item, item)
        view_b = self._collapsed_view(b, axes_b, free_b, k, n)
        if view_b is None:
            b = self.pack(b, list(axes_b) + free_b, site, launched)
            view_b = blas_view(k, n, n * item, item, item)
        self.gemm_call(site, launched, a.dtype.name, m, n, k, 1,
                       GemmOperand(a.ptr, *view_a, 0), GemmOperand(b.ptr, *view_b, 0),
                       GemmOperand(out.ptr, False, n, 0))
        return out

    @staticmethod
    def _collapsed_view(array, row_dims, col_dims, rows: int, cols: int):
        item = array.dtype.itemsize
        row = collapse(row_dims, array.shape, array.strides, item)
        col = collapse(col_dims, array.shape, array.strides, item)
        if row is None or col is None:
            return None
        return blas_view(rows, cols, row[1], col[1], item)

    # -- calls ---------------------------------------------------------------------------------
    def gemm_call(self, site: ErrorSite, launched: list, dtype: str, m: int, n: int, k: int,
              batch: int, a: GemmOperand, b: GemmOperand, c: GemmOperand) -> None:
        from tracejit.cuda.executor import KernelLaunchError
        if max(m, n, k, batch, a.ld, b.ld, c.ld) > INT32_MAX:
            raise ValueError(f"{site.op}: matrix product too large for cuBLAS's 32-bit sizes "
                             f"(m={m}, n={n}, k={k}, batch={batch}){site.where}")
        call = GemmCall(dtype, m, n, k, batch, a, b, c)
        try:
            self.device.gemm(call)
        except Exception as exc:
            raise KernelLaunchError(f"{site.op}: the device gemm failed: {exc}{site.where}") \
                from exc
        launched.append(site)

    def pack(self, array, order: Sequence[int], site: ErrorSite, launched: list,
             temporary: bool = True):
        """A C-contiguous copy of ``array`` with its dimensions in ``order`` (on the device).

        A ``temporary`` copy is held until ``release_packed``, after the kernels reading
        it; the caller keeps any other alive itself. What the copy kernel cannot move
        (more than PACK_MAX_DIMS dimensions, items of other than 4 or 8 bytes) goes
        through the host."""
        order = list(order)
        shape = [array.shape[d] for d in order]
        strides = [array.strides[d] for d in order]
        runner = self.runner
        if len(shape) > PACK_MAX_DIMS or self.pack_spec is None or \
                array.dtype.itemsize not in PACK_ITEM_SIZES:
            host = np.transpose(runner.to_host(array), order)
            return runner._upload(np.array(host, order="C", copy=True))
        out = runner._empty(shape, array.dtype.name)
        total = math.prod(shape)
        if total == 0:
            return out
        args = {"n": total, "item": array.dtype.itemsize, "nd": len(shape), "out": out.ptr,
                "in": array.ptr}
        for d in range(PACK_MAX_DIMS):
            args[f"shape{d}"] = shape[d] if d < len(shape) else 1
            args[f"st{d}"] = strides[d] if d < len(shape) else 0
        block = self.device.block_size
        grid = max(1, min(-(-total // block), self.device.max_blocks))
        runner._launch(self.pack_spec, grid, block, args, site, launched)
        if temporary:
            self._scratch.append(out)
        return out
