"""conv2d on the device: the input's patches gathered into a matrix, then one gemm.

The same plan as the C backend's native kernel (tracejit/codegen/native/nnet.py):
``cols[(c, u, v), (n, i, j)] = xpad[n, c, i*sh + u, j*sw + v]`` (zero in the
padding), then ``out[o, (n, i, j)] = W[o, (c, u, v)] @ cols`` through the
device's gemm, returned as an (N, O, oh, ow) view of that (O, N, oh, ow)
result. ``filter_flip`` is applied in the gather (row ``(c, u, v)`` reads
``kh-1-u, kw-1-v``), so the filters are used as they lie when C-ordered.
Gradients of conv2d are conv2d, indexing and shape ops (tracejit/ops/conv.py),
so they run here too.

Only float32/float64 with both operands of the result's dtype, on a device
with a gemm; a shape the reference rejects (channels that differ, a kernel
larger than the padded input, an empty kernel) takes the host round trip,
which raises the reference's error. The patch matrix holds C*kh*kw x
N*oh*ow elements.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from tracejit.codegen.kernel_ir import KernelProgram, PythonCall
from tracejit.cuda.gemm import GEMM_DTYPES, GemmOperand
from tracejit.cuda.views import c_ordered
from tracejit.ops.conv import Conv2D, conv_output_length, padding_for


def conv_steps(program: KernelProgram) -> dict[int, str]:
    """Step number -> "conv2d", for the float conv2d steps a device gemm can compute."""
    return {number: "conv2d" for number, _, node in program.python_calls()
            if isinstance(node.op, Conv2D) and _all_of_dtype(node, GEMM_DTYPES)}


def _all_of_dtype(node, dtypes) -> bool:
    """Whether the node's result has one of ``dtypes`` and its inputs the same."""
    dtype = node.outputs[0].type.dtype
    return dtype in dtypes and all(i.type.dtype == dtype for i in node.inputs)


_PARAMS = (("int64_t", "total"), ("char *", "cols"), ("const char *", "x"),
           *(("int64_t", name) for name in ("N", "C", "H", "W", "kh", "kw", "oh", "ow", "ph",
                                            "pw", "sh", "sw", "flip", "xs0", "xs1", "xs2",
                                            "xs3")))


def im2col_kernels(program: KernelProgram, prefix: str) -> tuple[str, dict[str, Any]]:
    """The patch-gathering kernels of the dtypes ``program``'s conv2d steps use."""
    from tracejit.cuda.render import KernelSpec
    dtypes = sorted({program.python_nodes[program.steps[n].callback].outputs[0].type.dtype
                     for n in conv_steps(program)})
    signature = ", ".join(f"{ctype} {name}" for ctype, name in _PARAMS)
    texts, specs = [], {}
    for dtype in dtypes:
        ctype = "float" if dtype == "float32" else "double"
        name = f"{prefix}_im2col_{dtype}"
        texts.append(f"""extern "C" __global__ void {name}({signature}) {{
    (void)C;
    const int64_t patches = N * oh * ow;
    const int64_t step = (int64_t)blockDim.x * gridDim.x;
    for (int64_t index = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; index < total;
         index += step) {{
        const int64_t column = index % patches, row = index / patches;
        const int64_t j = column % ow, i = (column / ow) % oh, n = column / (ow * oh);
        int64_t v = row % kw, u = (row / kw) % kh;
        const int64_t c = row / (kw * kh);
        if (flip) {{ u = kh - 1 - u; v = kw - 1 - v; }}
        const int64_t y = i * sh + u - ph, x_ = j * sw + v - pw;
        {ctype} value = 0;
        if (y >= 0 && y < H && x_ >= 0 && x_ < W)
            value = *(const {ctype} *)(x + n * xs0 + c * xs1 + y * xs2 + x_ * xs3);
        (({ctype} *)cols)[index] = value;
    }}
}}""")
        specs[dtype] = KernelSpec(name, _PARAMS)
    return "\n\n".join(texts), specs


class DeviceConvolutions:
    """The conv2d steps of one CudaRunner (through its DeviceProducts' gemm)."""

    def __init__(self, runner, products, specs: dict[str, Any]) -> None:
        self.runner = runner
        self.products = products
        self.specs = specs

    def run(self, kind: str, step: PythonCall, node, values: dict, host_copies: dict, flag,
            launched: list) -> bool:
        """Compute the step; False (nothing done) for shapes the reference rejects."""
        runner, op, site = self.runner, node.op, step.site
        x, w = (values[b.index] for b in step.inputs)
        (n, c, h, width), (o, c2, kh, kw) = x.shape, w.shape
        if c != c2 or kh == 0 or kw == 0:
            return False
        ph, pw = padding_for(op.border_mode, (kh, kw))
        sh, sw = op.subsample
        try:
            oh = conv_output_length(h, kh, ph, sh)
            ow = conv_output_length(width, kw, pw, sw)
        except ValueError:
            return False
        dtype, item = x.dtype.name, x.dtype.itemsize
        depth, patches = c * kh * kw, n * oh * ow
        product = runner._empty((o, n, oh, ow), dtype)
        if o and patches:
            if depth == 0:
                runner.device.zero(product.ptr, o * patches * item)
            else:
                self._gather_and_multiply(x, w, product, (n, c, h, width, kh, kw, oh, ow, ph,
                                                          pw, sh, sw), op.filter_flip, site,
                                          launched)
        strides = product.strides
        values[step.outputs[0].index] = replace(
            product, shape=(n, o, oh, ow), strides=(strides[1], strides[0], *strides[2:]))
        return True

    def _gather_and_multiply(self, x, w, product, sizes, flip: bool, site, launched) -> None:
        runner, products = self.runner, self.products
        n, c, h, width, kh, kw, oh, ow, ph, pw, sh, sw = sizes
        o, depth, patches = w.shape[0], c * kh * kw, n * oh * ow
        cols = runner._empty((depth, patches), x.dtype.name)
        total = depth * patches
        args = {"total": total, "cols": cols.ptr, "x": x.ptr, "N": n, "C": c, "H": h,
                "W": width, "kh": kh, "kw": kw, "oh": oh, "ow": ow, "ph": ph, "pw": pw,
                "sh": sh, "sw": sw, "flip": int(flip), "xs0": x.strides[0],
                "xs1": x.strides[1], "xs2": x.strides[2], "xs3": x.strides[3]}
        device = runner.device
        runner._launch(self.specs[x.dtype.name], max(1, min(-(-total // device.block_size),
                                                            device.max_blocks)),
                       device.block_size, args, site, launched)
        if not c_ordered(w):
            w = products.pack(w, range(4), site, launched)
        products.hold_until_released(cols)
        products.gemm_call(site, launched, x.dtype.name, o, patches, depth, 1,
                       GemmOperand(w.ptr, False, depth, 0), GemmOperand(cols.ptr, False,
                                                                        patches, 0),
                       GemmOperand(product.ptr, False, patches, 0))
        products.release_packed(launched)

