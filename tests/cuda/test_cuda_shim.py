"""The CUDA kernels' index logic, run on the CPU by the host shim over emulated grids.

The generated kernels (the same text nvcc compiles) run with emulated
blockIdx/threadIdx, ``__syncthreads`` and warp shuffles, through the same
host-side plan a GPU run uses (tracejit/cuda/executor.py), and are checked
against the reference interpreter. Grids are made small and blocks odd so
that grid-stride loops, chunked reductions and partial warps all run;
every buffer sits between guard bytes that must survive.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.runtime.interpreter import Interpreter
from tracejit.cuda import cuda_runner
from tracejit.cuda.executor import from_cuda_array_interface
from tracejit.cuda.render import KernelSpec
from tracejit.cuda.shim import EmulatedDevice, EmulatedDeviceArray, ShimError, ShimLibrary
from tracejit.graph.fgraph import FunctionGraph

from cuda_graphs import assert_matches, elementwise_graph, reduction_graph, values

# (threads per block, blocks per launch, blocks aimed at by a reduction)
GRIDS = [(1, 1, 1), (7, 3, 5), (32, 2, 3), (48, 5, 8), (64, 1000, 1000)]
# Emulated block reductions switch threads often: fewer, but still odd, grids.
REDUCE_GRIDS = [(1, 1, 1), (7, 3, 5), (40, 1000, 12)]


def _run_on_grids(runner, device, fgraph, names, inputs, skip=lambda name, inputs: False):
    reference = Interpreter(fgraph)
    expected = reference(inputs)
    for block, blocks, reduce_blocks in GRIDS:
        device.block_size, device.max_blocks, device.reduce_blocks = block, blocks, reduce_blocks
        actual = runner(inputs)
        for name, a, e in zip(names, actual, expected):
            if not skip(name, inputs):
                assert_matches(a, e, f"{name} (block {block}, grid {blocks})")
    assert device.guards_intact()


def _layouts(dtype: str, rng):
    base, other = values(dtype, (7, 5), rng), values(dtype, (7, 5), rng)
    condition = rng.random((7, 5)) < 0.5
    yield "contiguous", [base, other, condition]
    yield "transposed", [values(dtype, (5, 7), rng).T, other, condition]
    yield "negative strides", [base[::-1, ::-2], other[::-1, ::-2], condition[:, ::2]]
    yield "broadcast row", [base, other[:1], condition[:1]]
    yield "broadcast column", [base[:, :1], other, condition]
    yield "zero-size", [base[:0], other[:0], condition[:0]]
    yield "larger than the grid", [values(dtype, (37, 29), rng), values(dtype, (37, 29), rng),
                                   rng.random((37, 29)) < 0.5]


def _wide_unsigned_cast(dtype):
    """NumPy's wide unsigned casts of NaN/inf/negative floats depend on the CPU (see the C tests)."""
    def skip(name, inputs):
        return (np.dtype(dtype).kind == "f" and name.startswith("cast->u")
                and np.dtype(name[6:]).itemsize >= 4)
    return skip


@pytest.mark.parametrize("dtype", ["bool", "uint8", "int32", "float32", "float64"])
def test_every_row_on_emulated_grids(dtype):
    fgraph, names = elementwise_graph(dtype)
    device = EmulatedDevice()
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    rng = np.random.default_rng(3)
    for layout, inputs in _layouts(dtype, rng):
        _run_on_grids(runner, device, fgraph, names, inputs, _wide_unsigned_cast(dtype))
    assert any(grid < -(-37 * 29 // block) for _, grid, block in device.launches)


@pytest.mark.parametrize("dtype", ["bool", "int64", "float32"])
def test_every_reduction_on_emulated_grids(dtype):
    fgraph, names = reduction_graph(dtype)
    device = EmulatedDevice()
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    rng = np.random.default_rng(4)
    big = values(dtype, (6, 41, 9), rng)
    for inputs in ([big], [big[::-1, ::3, ::-2]],
                   [np.broadcast_to(values(dtype, (1, 4, 1), rng), (3, 4, 5))]):
        rtol = 1e-5 if dtype == "float32" else None
        expected = Interpreter(fgraph)(inputs)
        for block, blocks, reduce_blocks in REDUCE_GRIDS:
            device.block_size, device.max_blocks = block, blocks
            device.reduce_blocks = reduce_blocks
            for name, a, e in zip(names, runner(inputs), expected):
                assert_matches(a, e, f"{name} (block {block}, grid {blocks})", rtol=rtol)
    # Chunked reductions (several blocks per output, then a combining kernel) ran.
    assert any(name.endswith("_combine") for name, _, _ in device.launches)
    assert device.guards_intact()


def test_zero_size_reductions_and_0d_inputs():
    x = T.dmatrix("x")
    s, t = T.dscalar("s"), T.lscalar("t")
    outputs = [T.sum(x, axis=0), T.prod(x, axis=1), T.any(x > 0), T.max(x, axis=0),
               T.exp(s) * t, T.sum(s * 2.0), s + x]
    fgraph = FunctionGraph([x, s, t], outputs, clone=False)
    device = EmulatedDevice()
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    names = ["sum0", "prod1", "any", "max0", "exp(s)*t", "sum(s*2)", "s+x"]
    _run_on_grids(runner, device, fgraph, names, [np.zeros((4, 0)), np.array(1.5), np.array(3)])
    # max over a zero-length axis has no identity, as in NumPy.
    with pytest.raises(ValueError, match="zero-size array to reduction operation maximum"):
        runner([np.zeros((0, 4)), np.array(1.5), np.array(3)])


def test_integer_power_and_negative_exponents_raise():
    x, y = T.lmatrix("x"), T.lmatrix("y")
    fgraph = FunctionGraph([x, y], [x ** y, T.sum(x ** y, axis=1)], clone=False)
    runner = cuda_runner(fgraph, "FAST_RUN", device=EmulatedDevice(block_size=5, max_blocks=2))
    rng = np.random.default_rng(1)
    base, exponent = rng.integers(-5, 6, size=(4, 6)), rng.integers(0, 20, size=(4, 6))
    for actual, expected in zip(runner([base, exponent]), Interpreter(fgraph)([base, exponent])):
        assert_matches(actual, expected, "integer power")
    exponent[2, 3] = -1
    with pytest.raises(ValueError, match="negative integer powers"):
        runner([base, exponent])


def test_broadcast_errors_name_the_op_and_the_line():
    x, y = T.dvector("x"), T.dvector("y")
    fgraph = FunctionGraph([x, y], [T.tanh(x + y)], clone=False)
    runner = cuda_runner(fgraph, "FAST_RUN", device=EmulatedDevice())
    with pytest.raises(ValueError, match=r"could not be broadcast together with shapes \(3,\) "
                                         r"and \(4,\)(.|\n)*test_cuda_shim.py"):
        runner([np.ones(3), np.ones(4)])


def test_nodes_without_a_device_kernel_make_a_host_round_trip():
    a, b = T.dmatrix("a"), T.dmatrix("b")
    t = T.lvector("t")
    rows = T.arange(t.shape[0])
    outputs = [T.dot(a, b) + 1.0, T.log(T.softmax(a))[rows, t]]
    fgraph = FunctionGraph([a, b, t], outputs, clone=False)
    device = EmulatedDevice()
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    assert runner.reference_nodes  # dot and indexing run by their NumPy reference
    rng = np.random.default_rng(5)
    inputs = [rng.standard_normal((3, 4)), rng.standard_normal((4, 3)), np.array([0, 3, 1])]
    for actual, expected in zip(runner(inputs), Interpreter(fgraph)(inputs)):
        assert_matches(actual, expected, "round trip")
    inputs[2] = np.array([0, 9, 1])
    with pytest.raises(IndexError):
        runner(inputs)


def test_device_inputs_give_device_outputs_that_do_not_alias():
    x, y = T.dmatrix("x"), T.dmatrix("y")
    fgraph = FunctionGraph([x, y], [x * 2.0 + y, T.sum(y, axis=0), x], clone=False)
    device = EmulatedDevice()
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    host_x = np.arange(12.0).reshape(3, 4)
    ptr, memory = device.upload(host_x)
    on_device = EmulatedDeviceArray(from_cuda_array_interface(
        types.SimpleNamespace(__cuda_array_interface__={
            "shape": (3, 4), "typestr": "<f8", "data": (ptr, False), "version": 3,
            "strides": None})), None)
    on_device._array.owner = memory
    outputs = runner([on_device, np.ones((3, 4))])
    assert all(hasattr(o, "__cuda_array_interface__") for o in outputs)
    assert_matches(outputs[0].copy_to_host(), host_x * 2.0 + 1.0, "device output")
    assert_matches(outputs[1].copy_to_host(), np.full(4, 3.0), "device reduction")
    assert outputs[2].__cuda_array_interface__["data"][0] != ptr  # a copy, not the input
    assert_matches(outputs[2].copy_to_host(), host_x, "returned input")
    float32_view = types.SimpleNamespace(__cuda_array_interface__={
        "shape": (3, 4), "typestr": "<f4", "data": (ptr, False), "version": 3, "strides": None})
    with pytest.raises(TypeError, match="device arrays are not converted"):
        runner([on_device, float32_view])
    assert device.guards_intact()


def test_compiled_function_on_the_emulated_device(monkeypatch):
    """tj.compile(device="cuda") end to end, with the emulated device standing in for a GPU."""
    import tracejit.cuda.runtime as runtime
    monkeypatch.setattr(runtime, "default_device", lambda: EmulatedDevice(block_size=33))

    @tj.compile(device="cuda")
    def logistic(x):
        return 1 / (1 + np.exp(-x)) + x.sum(axis=0)

    values_in = np.linspace(-3, 3, 24).reshape(4, 6)
    expected = 1 / (1 + np.exp(-values_in)) + values_in.sum(axis=0)
    np.testing.assert_allclose(logistic(values_in), expected, rtol=1e-12)
    assert "__global__" in logistic.source(values_in)


# -- the emulator itself ---------------------------------------------------------------------

_BLOCK_SUM = """
extern "C" __global__ void block_sum(char *out) {
    __shared__ int64_t partials[32];
    const auto add = [](int64_t a, int64_t b) -> int64_t { return a + b; };
    const int64_t total = tj_block_reduce((int64_t)threadIdx.x + 1, (int64_t)0, partials, add);
    if (threadIdx.x == 0) ((int64_t *)out)[blockIdx.x] = total;
}
extern "C" __global__ void divergent(char *out) {
    if (threadIdx.x == 0) __syncthreads();
    out[0] = 1;
}
"""


def _library():
    specs = [KernelSpec("block_sum", (("char *", "out"),)),
             KernelSpec("divergent", (("char *", "out"),))]
    return ShimLibrary([types.SimpleNamespace(kernels_source=_BLOCK_SUM, kernels=specs)]), specs


def test_block_reduction_over_any_block_size():
    library, (block_sum, _) = _library()
    for block in (1, 2, 31, 32, 33, 63, 64, 100, 257, 1024):
        out = np.zeros(3, dtype=np.int64)
        library.launch(block_sum, 3, block, [out.ctypes.data])
        assert (out == block * (block + 1) // 2).all(), block


def test_divergent_syncthreads_is_reported_not_hung():
    library, (_, divergent) = _library()
    out = np.zeros(1, dtype=np.int8)
    with pytest.raises(ShimError, match="never all reached a barrier"):
        library.launch(divergent, 1, 4, [out.ctypes.data])


def test_short_reductions_launch_one_warp_per_block():
    x = T.dmatrix("x")
    fgraph = FunctionGraph([x], [T.sum(x, axis=1)], clone=False)
    device = EmulatedDevice(block_size=256, max_blocks=4)
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    for columns, block in [(1, 32), (40, 64), (1000, 256)]:
        value = np.arange(3.0 * columns).reshape(3, columns)
        np.testing.assert_allclose(runner([value])[0], value.sum(axis=1), rtol=1e-12)
        assert device.launches[-1][2] == block
