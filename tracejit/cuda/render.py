"""Print a KernelProgram's loops as CUDA kernels, plus the plan to launch them.

The scalar expressions are the C backend's (``BodyRenderer`` of
tracejit/codegen/c_render.py, the same dtype conversions and ``tj_*``
helpers), so both backends compute the same values; only the loop
structure differs:

- an ``ElementwiseLoop`` is one kernel with a grid-stride loop over the
  flattened output index. Each index is unravelled against the loop shape
  and each operand's byte strides (zero on broadcast dimensions, negative
  where the input is reversed); when every operand is C-contiguous with the
  loop's shape the launch sets ``flat`` and offsets are ``i * itemsize``.
  Outputs are always fresh C-contiguous arrays;
- a ``ReduceLoop`` is one kernel where a block computes one output element
  (or one chunk of it: ``chunks`` blocks per output element when there are
  few outputs and many reduced elements; a second kernel then combines the
  chunks' partial results). Threads stride over the reduced elements, then
  combine through warp shuffles and shared memory (prelude's
  ``tj_block_reduce``), with the C backend's NaN-propagating max/min.

Everything else in the program (views, shape vectors, matrix products
through the device's gemm, nodes run by their reference) is executed by the
host-side plan (tracejit/cuda/executor.py). A program with matrix products,
softmax rows or reshapes also gets one strided copy kernel (``CudaModule.pack``,
tracejit/cuda/gemm.py), one with softmax rows the row kernels
(``CudaModule.softmax``, tracejit/cuda/rows.py), and one with basic
IncSubtensor steps the strided update kernels (``CudaModule.update``,
tracejit/cuda/strided_writes.py, which also fill Allocs); gathers and scatter-adds through index
arrays have theirs (``CudaModule.gather``, tracejit/cuda/gather.py), and
conv2d its patch gather (``CudaModule.im2col``, tracejit/cuda/conv.py), and
argmax/argmin their row kernels (``CudaModule.arg``, tracejit/cuda/argbest.py).

Kernel parameters are plain scalars and pointers (``KernelSpec.params``),
so a launch needs no struct packing, whichever driver binding makes it.
Signed integer arithmetic goes through unsigned types: C++ has no
``-fwrapv`` and NumPy's integers wrap.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tracejit.codegen.c_prelude import C_TYPES
from tracejit.codegen.c_render import BodyRenderer, _reduction_parts
from tracejit.codegen.kernel_ir import ElementwiseLoop, KernelProgram, ReduceLoop, ScalarStep
from tracejit.cuda.gemm import gemm_steps, pack_kernel
from tracejit.cuda.argbest import arg_kernels, arg_steps
from tracejit.cuda.conv import conv_steps, im2col_kernels
from tracejit.cuda.gather import gather_kernels
from tracejit.cuda.strided_writes import update_kernels
from tracejit.cuda.prelude import cuda_prelude
from tracejit.cuda.rows import softmax_kernels, softmax_steps
from tracejit.cuda.views import view_steps

_WRAPPING = {"add": "+", "sub": "-", "mul": "*"}
_COMBINE = {"sum": "a + b", "prod": "a * b", "all": "a && b", "any": "a || b",
            "max": "tj_maximum(a, b)", "min": "tj_minimum(a, b)"}


@dataclass(frozen=True)
class KernelSpec:
    """One ``__global__`` function: its name and its parameters, in order.

    ``params`` are (C type, name) pairs; the C types are ``int64_t``,
    ``int *`` or ``[const] char *``.
    """

    name: str
    params: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class ElementwiseLaunch:
    kernel: KernelSpec
    loop: ElementwiseLoop


@dataclass(frozen=True)
class ReduceLaunch:
    kernel: KernelSpec
    combine: KernelSpec   # reduces the chunks' partial results when chunks > 1
    loop: ReduceLoop


@dataclass
class CudaModule:
    """The CUDA source of a program and, per loop step, how to launch it."""

    program: KernelProgram
    kernels_source: str                 # the kernels alone (no prelude)
    kernels: list[KernelSpec]
    launches: dict[int, object]         # step number -> ElementwiseLaunch / ReduceLaunch
    # The strided copy kernel matrix products and softmax rows use to pack an
    # operand they cannot read in place (tracejit/cuda/gemm.py); only in programs
    # with such steps.
    pack: KernelSpec | None = None
    # dtype -> the softmax row kernel (tracejit/cuda/rows.py), in programs with Softmax.
    softmax: dict[str, KernelSpec] = field(default_factory=dict)
    # dtype -> the strided update kernel (tracejit/cuda/strided_writes.py), in programs
    # with basic IncSubtensor, Alloc or scatter-add steps.
    update: dict[str, KernelSpec] = field(default_factory=dict)
    # "gather<item size>" / "scatter_<dtype>" -> kernel (tracejit/cuda/gather.py).
    gather: dict[str, KernelSpec] = field(default_factory=dict)
    # dtype -> the patch-gathering kernel of conv2d (tracejit/cuda/conv.py).
    im2col: dict[str, KernelSpec] = field(default_factory=dict)
    # "<max|min>_<dtype>" -> the argmax/argmin row kernel (tracejit/cuda/argbest.py).
    arg: dict[str, KernelSpec] = field(default_factory=dict)

    @property
    def source(self) -> str:
        return cuda_source([self.kernels_source])


def cuda_source(kernel_sources: list[str]) -> str:
    """One translation unit: the prelude, then the given kernels."""
    return "\n\n".join([cuda_prelude(), *kernel_sources]) + "\n"


class WrappingBodyRenderer(BodyRenderer):
    """The C backend's body, with integer + - * computed in unsigned arithmetic."""

    def expression(self, step: ScalarStep, args: list[str]) -> str:
        name = step.op.name
        dtype = np.dtype(step.dtype)
        narrow_or_signed = dtype.kind == "i" or (dtype.kind == "u" and dtype.itemsize < 4)
        if narrow_or_signed and all(d == step.dtype for d in step.arg_dtypes):
            unsigned = "uint64_t" if dtype.itemsize == 8 else "uint32_t"
            if name in _WRAPPING:
                return f"(({unsigned})({args[0]}) {_WRAPPING[name]} ({unsigned})({args[1]}))"
            if name == "neg":
                return f"(({unsigned})0 - ({unsigned})({args[0]}))"
            if name == "square":
                return f"(({unsigned})({args[0]}) * ({unsigned})({args[0]}))"
        return super().expression(step, args)


def _ctype(dtype: str) -> str:
    return C_TYPES[dtype]


class CudaRenderer:
    def __init__(self, program: KernelProgram, prefix: str = "tj_kernel") -> None:
        self.program = program
        self.prefix = prefix
        self.texts: list[str] = []
        self.kernels: list[KernelSpec] = []
        self.launches: dict[int, object] = {}

    def render(self) -> CudaModule:
        for number, step in enumerate(self.program.steps):
            if isinstance(step, ElementwiseLoop):
                kernel = self.elementwise_kernel(f"{self.prefix}_{number}", step)
                self.launches[number] = ElementwiseLaunch(kernel, step)
            elif isinstance(step, ReduceLoop):
                kernel, combine = self.reduce_kernels(f"{self.prefix}_{number}", step)
                self.launches[number] = ReduceLaunch(kernel, combine, step)
        pack = None
        has_rows = bool(softmax_steps(self.program))
        if has_rows or gemm_steps(self.program) or view_steps(self.program) or \
                conv_steps(self.program) or arg_steps(self.program):
            text, pack = pack_kernel(f"{self.prefix}_pack")
            self.texts.append(text)
            self.kernels.append(pack)
        # The hand-written kernel families, each only where the program has its steps.
        softmax = self._add_family(*(softmax_kernels(self.prefix) if has_rows else ("", {})))
        update = self._add_family(*update_kernels(self.program, self.prefix))
        gather = self._add_family(*gather_kernels(self.program, self.prefix))
        im2col = self._add_family(*im2col_kernels(self.program, self.prefix))
        arg = self._add_family(*arg_kernels(self.program, self.prefix))
        return CudaModule(self.program, "\n\n".join(self.texts), self.kernels, self.launches,
                          pack, softmax, update, gather, im2col, arg)

    def _add_family(self, text: str, specs: dict[str, KernelSpec]) -> dict[str, KernelSpec]:
        if specs:
            self.texts.append(text)
            self.kernels.extend(specs.values())
        return specs

    def _emit(self, spec: KernelSpec, body: list[str]) -> KernelSpec:
        params = ", ".join(f"{ctype} {name}" for ctype, name in spec.params)
        self.texts.append("\n".join([f'extern "C" __global__ void {spec.name}({params}) {{',
                                     *body, "}"]))
        self.kernels.append(spec)
        return spec

    @staticmethod
    def _operand_params(operands, nd: int) -> list[tuple[str, str]]:
        params = []
        for k in range(len(operands)):
            params.append(("const char *", f"in{k}"))
            params += [("int64_t", f"in{k}_st{d}") for d in range(nd)]
        return params

    @staticmethod
    def _loads(operands, scalar_operands, offset_of) -> list[str]:
        lines = []
        for k, (buffer, scalar) in enumerate(zip(operands, scalar_operands)):
            ctype = _ctype(buffer.dtype)
            value = f"s{k}" if scalar else f"*(const {ctype} *)(in{k} + {offset_of(k)})"
            lines += [f"const {ctype} v{k} = {value};", f"(void)v{k};"]
        return lines

    @staticmethod
    def _scalar_loads(operands, scalar_operands) -> list[str]:
        lines = []
        for k, (buffer, scalar) in enumerate(zip(operands, scalar_operands)):
            if scalar:
                ctype = _ctype(buffer.dtype)
                lines.append(f"    const {ctype} s{k} = *(const {ctype} *)in{k};")
        return lines

    @staticmethod
    def _unravel(index: str, dims: list[int], operands, scalar_operands,
                 offsets: dict[int, str], indent: str) -> list[str]:
        """Statements adding the strided offsets of flat ``index`` over ``dims``."""
        lines = []
        live = [k for k, scalar in enumerate(scalar_operands) if not scalar]
        if not dims or not live:
            return lines
        lines.append(f"{indent}int64_t rest = {index};")
        for position, d in reversed(list(enumerate(dims))):
            if position == 0:
                lines.append(f"{indent}const int64_t i{d} = rest;")
            else:
                lines.append(f"{indent}const int64_t i{d} = rest % shape{d};")
                lines.append(f"{indent}rest /= shape{d};")
            for k in live:
                lines.append(f"{indent}{offsets[k]} += i{d} * in{k}_st{d};")
        return lines

    # -- elementwise -------------------------------------------------------------------------
    def elementwise_kernel(self, name: str, loop: ElementwiseLoop) -> KernelSpec:
        nd = loop.ndim
        params = [("int64_t", "n"), ("int64_t", "flat"), ("int *", "bad")]
        params += [("int64_t", f"shape{d}") for d in range(nd)]
        params += [("char *", f"out{k}") for k in range(len(loop.outputs))]
        params += self._operand_params(loop.operands, nd)
        body = WrappingBodyRenderer(loop.operands, loop.steps)
        live = [k for k, scalar in enumerate(loop.scalar_operands) if not scalar]
        lines = ["    (void)flat; (void)bad;"]
        lines += [f"    (void)shape{d};" for d in range(nd)]
        lines += [f"    (void)in{k}_st{d};" for k in range(len(loop.operands)) for d in range(nd)]
        lines.append("    int tj_bad = 0;")
        lines += self._scalar_loads(loop.operands, loop.scalar_operands)
        lines += ["    const int64_t step = (int64_t)blockDim.x * gridDim.x;",
                  "    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; "
                  "i += step) {"]
        offsets = {k: f"o{k}" for k in live}
        if live:
            lines.append("        " + " ".join(f"int64_t o{k} = 0;" for k in live))
            lines.append("        if (flat) {")
            for k in live:
                lines.append(f"            o{k} = i * (int64_t)sizeof({_ctype(loop.operands[k].dtype)});")
            lines.append("        } else {")
            lines += self._unravel("i", list(range(nd)), loop.operands, loop.scalar_operands,
                                   offsets, "            ")
            lines.append("        }")
        lines += ["        " + s for s in self._loads(loop.operands, loop.scalar_operands,
                                                     lambda k: offsets[k])]
        lines += ["        " + s for s in body.statements()]
        for k, (buffer, ref) in enumerate(zip(loop.outputs, loop.results)):
            ctype = _ctype(buffer.dtype)
            lines.append(f"        (({ctype} *)out{k})[i] = {body.result(ref, buffer.dtype)};")
        lines += ["    }", "    if (tj_bad) atomicOr(bad, 1);"]
        return self._emit(KernelSpec(name, tuple(params)), lines)

    # -- reductions --------------------------------------------------------------------------
    def reduce_kernels(self, name: str, loop: ReduceLoop) -> tuple[KernelSpec, KernelSpec]:
        nd = loop.input_ndim
        kept = [d for d in range(nd) if d not in loop.axes]
        reduced = [d for d in range(nd) if d in loop.axes]
        acc_type = _ctype(loop.accumulator_dtype)
        out_type = _ctype(loop.output.dtype)
        identity, _ = _reduction_parts(loop.kind, loop.accumulator_dtype)
        combine_text = _COMBINE[loop.kind]
        if loop.kind in ("sum", "prod") and np.dtype(loop.accumulator_dtype).kind in "iu":
            combine_text = f"(uint64_t)a {'+' if loop.kind == 'sum' else '*'} (uint64_t)b"
        combine = f"[](const {acc_type} a, const {acc_type} b) -> {acc_type} " \
                  f"{{ return ({acc_type})({combine_text}); }}"
        body = WrappingBodyRenderer(loop.operands, loop.steps)
        value = body.result(loop.value, loop.value_dtype if loop.kind in ("all", "any")
                            else loop.accumulator_dtype)
        live = [k for k, scalar in enumerate(loop.scalar_operands) if not scalar]
        params = [("int64_t", "n_out"), ("int64_t", "n_reduced"), ("int64_t", "chunks"),
                  ("int *", "bad")]
        params += [("int64_t", f"shape{d}") for d in range(nd)]
        params += [("char *", "out"), ("char *", "partial")]
        params += self._operand_params(loop.operands, nd)
        lines = ["    (void)bad; (void)partial;"]
        lines += [f"    (void)shape{d};" for d in range(nd)]
        lines += [f"    (void)in{k}_st{d};" for k in range(len(loop.operands)) for d in range(nd)]
        lines += [f"    __shared__ {acc_type} tj_partials[32];",
                  "    int tj_bad = 0;",
                  f"    const {acc_type} identity = {identity};",
                  f"    const auto combine = {combine};"]
        lines += self._scalar_loads(loop.operands, loop.scalar_operands)
        lines += ["    /* Every thread of a block runs the same rounds: the block reduction",
                  "       synchronizes the block. */",
                  "    for (int64_t b = blockIdx.x; b < n_out * chunks; b += gridDim.x) {",
                  "        const int64_t o = b / chunks, chunk = b % chunks;"]
        if live:
            lines.append("        " + " ".join(f"int64_t base{k} = 0;" for k in live))
            lines.append("        {")
            lines += self._unravel("o", kept, loop.operands, loop.scalar_operands,
                                   {k: f"base{k}" for k in live}, "            ")
            lines.append("        }")
        lines += [f"        {acc_type} acc = identity;",
                  "        for (int64_t r = chunk * blockDim.x + threadIdx.x; r < n_reduced; "
                  "r += chunks * (int64_t)blockDim.x) {"]
        if live:
            lines.append("            " + " ".join(f"int64_t o{k} = base{k};" for k in live))
            lines += self._unravel("r", reduced, loop.operands, loop.scalar_operands,
                                   {k: f"o{k}" for k in live}, "            ")
        lines += ["            " + s for s in self._loads(loop.operands, loop.scalar_operands,
                                                         lambda k: f"o{k}")]
        lines += ["            " + s for s in body.statements()]
        lines += [f"            acc = combine(acc, {value});",
                  "        }",
                  "        acc = tj_block_reduce(acc, identity, tj_partials, combine);",
                  "        if (threadIdx.x == 0) {",
                  f"            if (chunks == 1) (({out_type} *)out)[o] = ({out_type})acc;",
                  f"            else (({acc_type} *)partial)[b] = acc;",
                  "        }",
                  "    }",
                  "    if (tj_bad) atomicOr(bad, 1);"]
        kernel = self._emit(KernelSpec(name, tuple(params)), lines)
        combine_params = (("int64_t", "n_out"), ("int64_t", "chunks"), ("char *", "out"),
                          ("const char *", "partial"))
        combine_lines = [
            f"    __shared__ {acc_type} tj_partials[32];",
            f"    const {acc_type} identity = {identity};",
            f"    const auto combine = {combine};",
            "    for (int64_t o = blockIdx.x; o < n_out; o += gridDim.x) {",
            f"        {acc_type} acc = identity;",
            "        for (int64_t r = threadIdx.x; r < chunks; r += blockDim.x)",
            f"            acc = combine(acc, ((const {acc_type} *)partial)[o * chunks + r]);",
            "        acc = tj_block_reduce(acc, identity, tj_partials, combine);",
            f"        if (threadIdx.x == 0) (({out_type} *)out)[o] = ({out_type})acc;",
            "    }",
        ]
        combine_kernel = self._emit(KernelSpec(f"{name}_combine", combine_params), combine_lines)
        return kernel, combine_kernel


def render_cuda(program: KernelProgram, prefix: str = "tj_kernel") -> CudaModule:
    """The CUDA kernels of ``program``'s loops and their launch plan.

    ``prefix`` names the kernels (``<prefix>_<step number>``): distinct
    prefixes let several programs share one translation unit.
    """
    return CudaRenderer(program, prefix).render()
