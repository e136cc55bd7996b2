"""device="cuda": matrix products through the device's gemm; shared variables kept on the device.

Everything here runs on the emulated device (tracejit/cuda/shim.py): its
``gemm`` checks each call's arguments as cuBLAS would and computes it with
NumPy over host memory, and it counts every host <-> device copy. The cuBLAS
binding itself (tracejit/cuda/cublas.py) cannot run without a GPU: its
declarations are checked against cublas_api.h where that header is found,
and its row-major -> column-major conversion against a column-major
reference gemm.
"""

from __future__ import annotations

import ctypes
import glob
import os
import shutil
import types

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.cuda import cuda_runner
from tracejit.cuda import cublas
from tracejit.cuda.gemm import GemmCall, GemmOperand, blas_view, collapse
from tracejit.cuda.shim import EmulatedDevice, ShimError
from tracejit.graph.fgraph import FunctionGraph
from tracejit.runtime.interpreter import Interpreter
from tracejit.runtime.shared import DeviceValueContainer

from cuda_graphs import assert_matches

THIS_FILE = "test_cuda_gemm_shared.py"


def _device_object(device: EmulatedDevice, view: np.ndarray):
    """``view`` (any strides, a view of a C-contiguous base) as emulated device memory."""
    base = view.base if view.base is not None else view
    while base.base is not None:
        base = base.base
    assert base.flags.c_contiguous
    ptr, memory = device.upload(np.ascontiguousarray(base))
    offset = view.__array_interface__["data"][0] - base.__array_interface__["data"][0]
    interface = {"shape": view.shape, "strides": view.strides, "typestr": view.dtype.str,
                 "data": (ptr + offset, False), "version": 3}
    return types.SimpleNamespace(__cuda_array_interface__=interface, memory=memory)


def _pack_launches(device: EmulatedDevice) -> int:
    return sum(name.endswith("_pack") for name, _, _ in device.launches)


# -- matrix products -----------------------------------------------------------------------------

def _products(dtype: str):
    a, b = T.matrix("a", dtype=dtype), T.matrix("b", dtype=dtype)
    v = T.vector("v", dtype=dtype)
    x3 = T.tensor3("x3", dtype=dtype)
    y3 = T.tensor3("y3", dtype=dtype)
    outputs = {
        "a@b": T.dot(a, b), "a.T@b": T.dot(a.T, b), "a@b.T": a @ b.T, "a.T@b.T": a.T @ b.T,
        "v@a": T.dot(v, a), "a@v": a @ v, "v@v": T.dot(v, v), "x3@a": x3 @ a,
        "x3@y3": x3 @ y3, "a@y3": a @ y3, "swap(x3)@y3": T.swapaxes(x3, 1, 2) @ y3,
        "tensordot(x3,y3,2)": T.tensordot(x3, y3, 2),
        "tensordot(x3,a,[1],[0])": T.tensordot(x3, a, ([1], [0])),
        "tensordot(y3,x3,[0,2],[2,0])": T.tensordot(y3, x3, ([0, 2], [2, 0])),
        "dot(x3,a)": T.dot(x3, a),
    }
    return FunctionGraph([a, b, v, x3, y3], list(outputs.values()), clone=False), list(outputs)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_products_run_as_device_gemm_and_match_numpy(dtype):
    fgraph, names = _products(dtype)
    device = EmulatedDevice(block_size=7, max_blocks=3)
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    assert runner.reference_nodes == [] and runner.round_trip_notes == []
    rng = np.random.default_rng(0)
    n = 4
    inputs = [rng.standard_normal(s).astype(dtype)
              for s in [(n, n), (n, n), (n,), (n, n, n), (n, n, n)]]
    rtol = 2e-5 if dtype == "float32" else 1e-12
    for name, actual, expected in zip(names, runner(inputs), Interpreter(fgraph)(inputs)):
        assert_matches(actual, expected, name, rtol=rtol)
    assert device.gemms and all(call.dtype == dtype for call in device.gemms)
    assert device.guards_intact()


def test_transposed_operands_are_passed_with_a_flag_not_copied():
    a, b = T.dmatrix("a"), T.dmatrix("b")
    device = EmulatedDevice()
    runner = cuda_runner(FunctionGraph([a, b], [a.T @ b.T], clone=False), "FAST_RUN",
                         device=device)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((3, 5)), rng.standard_normal((4, 3))
    assert_matches(runner([x, y])[0], x.T @ y.T, "a.T @ b.T", rtol=1e-12)
    (call,) = device.gemms
    assert (call.m, call.n, call.k) == (5, 4, 3)
    assert call.a.transposed and call.b.transposed and (call.a.ld, call.b.ld) == (5, 3)
    assert _pack_launches(device) == 0


def test_a_batch_times_a_shared_matrix_is_one_product():
    x, w = T.dtensor3("x"), T.dmatrix("w")
    device = EmulatedDevice()
    runner = cuda_runner(FunctionGraph([x, w], [x @ w], clone=False), "FAST_RUN", device=device)
    rng = np.random.default_rng(2)
    xs, ws = rng.standard_normal((6, 4, 3)), rng.standard_normal((3, 5))
    assert_matches(runner([xs, ws])[0], xs @ ws, "x3 @ w", rtol=1e-12)
    (call,) = device.gemms
    assert (call.m, call.n, call.k, call.batch) == (24, 5, 3, 1)


def test_batched_products_use_strided_batches_with_broadcast_strides():
    x, y = T.TensorType("float64", (False, True, False, False))("x"), T.dtensor3("y")
    device = EmulatedDevice()
    runner = cuda_runner(FunctionGraph([x, y], [x @ y], clone=False), "FAST_RUN", device=device)
    rng = np.random.default_rng(3)
    xs, ys = rng.standard_normal((2, 1, 4, 3)), rng.standard_normal((5, 3, 6))
    assert_matches(runner([xs, ys])[0], xs @ ys, "(2,1,4,3) @ (5,3,6)", rtol=1e-12)
    # The batch is (2, 5): x is broadcast along the 5 (stride 0) but not the 2, so
    # the two batch dimensions do not collapse: one call of 5 per index of the 2.
    assert [(call.batch, call.a.batch_stride, call.b.batch_stride)
            for call in device.gemms] == [(5, 0, 18), (5, 0, 18)]


def test_operands_gemm_cannot_read_in_place_are_packed_on_the_device():
    a, b = T.dmatrix("a"), T.dmatrix("b")
    x3 = T.dtensor3("x3")
    fgraph = FunctionGraph([a, b, x3], [a @ b, T.tensordot(x3, a, ([0], [1]))], clone=False)
    device = EmulatedDevice(block_size=5, max_blocks=2)
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    rng = np.random.default_rng(4)
    base_a, base_b = rng.standard_normal((10, 8)), rng.standard_normal((8, 7))
    base_x = rng.standard_normal((4, 5, 6))
    layouts = {"negative strides": (base_a[::-1, ::-1][:5, :4], base_b[::-1][:4, :5],
                                    base_x[::-1, :, ::-1]),
               "steps in both dimensions": (base_a[::2, ::2], base_b[::2, ::2],
                                            base_x[:, ::2, ::3]),
               "zero-size": (base_a[:0, :4], base_b[:4, :0], base_x[:, :0])}
    for label, views in layouts.items():
        outputs = runner([_device_object(device, v) for v in views])
        view_a, view_b, view_x = views
        expected = [view_a @ view_b, np.tensordot(view_x, view_a, ([0], [1]))]
        for name, actual, e in zip(["a@b", "tensordot"], outputs, expected):
            assert_matches(actual.copy_to_host(), e, f"{name}, {label}", rtol=1e-12)
    assert _pack_launches(device) > 0
    assert device.guards_intact()


def test_zero_size_products():
    a, b = T.dmatrix("a"), T.dmatrix("b")
    x3, y3 = T.dtensor3("x3"), T.dtensor3("y3")
    fgraph = FunctionGraph([a, b, x3, y3], [a @ b, x3 @ y3, T.tensordot(x3, y3, ([0], [0]))],
                           clone=False)
    runner = cuda_runner(fgraph, "FAST_RUN", device=EmulatedDevice())
    for shapes in [((3, 0), (0, 4), (2, 3, 0), (2, 0, 5)), ((0, 2), (2, 4), (2, 0, 2), (2, 2, 5)),
                   ((3, 2), (2, 0), (2, 3, 2), (2, 2, 0)), ((1, 2), (2, 1), (0, 3, 2), (0, 2, 5))]:
        inputs = [np.ones(s) for s in shapes]
        for actual, expected in zip(runner(inputs), Interpreter(fgraph)(inputs)):
            assert_matches(actual, expected, str(shapes))


def test_shape_errors_name_the_op_and_the_line():
    a, b = T.dmatrix("a"), T.dmatrix("b")
    x3, y3 = T.dtensor3("x3"), T.dtensor3("y3")
    fgraph = FunctionGraph([a, b, x3, y3], [a @ b, x3 @ y3, T.tensordot(x3, y3, ([0], [0]))],
                           clone=False)
    runner = cuda_runner(fgraph, "FAST_RUN", device=EmulatedDevice())
    good = [np.ones((2, 3)), np.ones((3, 4)), np.ones((2, 3, 4)), np.ones((2, 4, 5))]
    runner(good)
    cases = [(0, (2, 5), r"matmul: inner dimensions differ \(5 != 3\): shapes \(2, 5\) and "
                         r"\(3, 4\)"),
             (3, (3, 4, 5), r"matmul: batch dimensions could not be broadcast together"),
             (3, (1, 4, 5), r"tensordot: shape-mismatch for sum")]
    for position, shape, message in cases:
        inputs = list(good)
        inputs[position] = np.ones(shape)
        with pytest.raises(ValueError, match=message + f"(.|\n)*{THIS_FILE}"):
            runner(inputs)


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="nvcc is not installed")
def test_the_pack_kernel_compiles_with_nvcc(tmp_path):
    from tracejit.codegen.lower import lower_graph
    from tracejit.cuda.render import render_cuda
    import subprocess
    fgraph, _ = _products("float64")
    module = render_cuda(lower_graph(fgraph))
    assert module.pack is not None and module.pack in module.kernels
    path = tmp_path / "pack.cu"
    path.write_text(module.source)
    result = subprocess.run(["nvcc", "--ptx", "-arch=sm_90", "-std=c++17", "-Werror",
                             "all-warnings", str(path), "-o", str(tmp_path / "pack.ptx")],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f".entry {module.pack.name}" in (tmp_path / "pack.ptx").read_text()


def test_without_gemm_products_make_a_host_round_trip_and_say_so():
    a, b = T.dmatrix("a"), T.dmatrix("b")
    fgraph = FunctionGraph([a, b], [T.dot(a, b) + 1.0], clone=False)
    device = EmulatedDevice(gemm=False)
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    assert len(runner.reference_nodes) == 1
    assert "host round trip" in runner.round_trip_notes[0]
    assert "without gemm" in runner.round_trip_notes[0]
    x = np.arange(6.0).reshape(2, 3)
    assert_matches(runner([x, x.T])[0], x @ x.T + 1.0, "round trip", rtol=1e-12)
    assert device.gemms == []


def test_integer_and_mixed_dtype_products_keep_the_host_round_trip():
    a, b, f = T.lmatrix("a"), T.lmatrix("b"), T.dmatrix("f")
    fgraph = FunctionGraph([a, b, f], [a @ b, a @ f], clone=False)
    device = EmulatedDevice()
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    assert len(runner.reference_nodes) == 2
    x = np.arange(6).reshape(2, 3)
    outputs = runner([x, x.T, x.T.astype(float)])
    assert_matches(outputs[0], x @ x.T, "int")
    assert_matches(outputs[1], x @ x.T.astype(float), "mixed")
    assert device.gemms == []


def test_the_emulated_gemm_rejects_what_cublas_rejects():
    device = EmulatedDevice()
    c = np.zeros((2, 3))
    a, b = np.ones((2, 4)), np.ones((4, 3))
    good = GemmCall("float64", 2, 3, 4, 1, GemmOperand(a.ctypes.data, False, 4, 0),
                    GemmOperand(b.ctypes.data, False, 3, 0),
                    GemmOperand(c.ctypes.data, False, 3, 0))
    device.gemm(good)
    assert (c == 4).all()
    with pytest.raises(ShimError, match="leading dimension"):
        device.gemm(GemmCall("float64", 2, 3, 4, 1, GemmOperand(a.ctypes.data, False, 3, 0),
                             good.b, good.c))
    with pytest.raises(ShimError, match="overlap"):
        device.gemm(GemmCall("float64", 2, 3, 4, 2, good.a, good.b,
                             GemmOperand(c.ctypes.data, False, 3, 3)))


def test_layout_helpers_match_the_c_backend_rules():
    item = 8
    assert blas_view(3, 4, 32, 8, item) == (False, 4)        # row-major
    assert blas_view(3, 4, 8, 24, item) == (True, 3)         # transposed
    assert blas_view(3, 4, -32, 8, item) is None             # reversed rows
    assert blas_view(3, 4, 64, 16, item) is None             # steps in both
    assert blas_view(1, 4, 0, 16, item) == (True, 2)         # one strided row
    assert blas_view(4, 1, 8, 0, item) == (False, 1)         # one column
    assert collapse([0, 2], (4, 5, 6), (240, 48, 8), item) is None
    assert collapse([1, 2], (4, 5, 6), (240, 48, 8), item) == (30, 8)
    assert collapse([0, 1], (4, 1, 6), (48, 48, 8), item) == (4, 48)
    assert collapse([], (4,), (8,), item) == (1, 8)


# -- the cuBLAS binding (not run: no GPU) ------------------------------------------------------

def _cublas_headers() -> list[str]:
    roots = []
    nvcc = shutil.which("nvcc")
    if nvcc:
        # /usr/local/bin/nvcc may be a wrapper script: also ask nvcc where it lives.
        roots.append(os.path.dirname(os.path.dirname(os.path.realpath(nvcc))))
        with open(os.path.realpath(nvcc), "rb") as handle:
            head = handle.read(400)
        if head.startswith(b"#!"):
            for word in head.decode(errors="ignore").split():
                if word.endswith("/bin/nvcc"):
                    roots.append(os.path.dirname(os.path.dirname(word)))
    roots += [os.path.dirname(d) for d in cublas.wheel_library_dirs()]
    found = []
    for root in roots:
        found += glob.glob(os.path.join(root, "include", "cublas_api.h"))
        found += glob.glob(os.path.join(root, "targets", "*", "include", "cublas_api.h"))
    return found


@pytest.mark.skipif(not _cublas_headers(), reason="cublas_api.h is not installed with nvcc "
                                                  "(nor the nvidia-cublas wheel): the cuBLAS "
                                                  "declarations are unchecked")
def test_cublas_declarations_match_the_header():
    for header in _cublas_headers():
        with open(header) as handle:
            assert cublas.header_mismatches(handle.read()) == [], header


def test_the_header_check_catches_a_wrong_declaration():
    right = ("cublasStatus_t cublasCreate_v2(cublasHandle_t* handle);\n"
             "cublasStatus_t cublasDestroy_v2(cublasHandle_t handle);\n"
             "cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t streamId);\n")
    for letter, ctype in (("S", "float"), ("D", "double")):
        right += (f"cublasStatus_t cublas{letter}gemmStridedBatched(cublasHandle_t handle, "
                  f"cublasOperation_t transa, cublasOperation_t transb, int m, int n, int k, "
                  f"const {ctype}* alpha, const {ctype}* A, int lda, long long int strideA, "
                  f"const {ctype}* B, int ldb, long long int strideB, const {ctype}* beta, "
                  f"{ctype}* C, int ldc, long long int strideC, int batchCount);\n")
    assert cublas.header_mismatches(right) == []
    wrong = right.replace("long long int strideC", "int strideC")
    assert any("gemmStridedBatched" in p for p in cublas.header_mismatches(wrong))


class _ColumnMajorLibrary:
    """Stands in for libcublas: a column-major strided-batched gemm over host memory."""

    def _gemm(self, dtype, handle, transa, transb, m, n, k, alpha, A, lda, stride_a, B, ldb,
              stride_b, beta, C, ldc, stride_c, batch):
        item = np.dtype(dtype).itemsize

        def matrices(ptr, rows, cols, ld, stride, transposed):
            # column-major rows x cols (of op(X)): X stored column-major with ld.
            stored = (cols, rows) if transposed else (rows, cols)
            strides = (stride * item, item, ld * item)
            size = ((batch - 1) * stride + (stored[1] - 1) * ld + stored[0]) * item
            raw = np.ctypeslib.as_array((ctypes.c_uint8 * size).from_address(ptr)).view(dtype)
            view = np.lib.stride_tricks.as_strided(raw, (batch,) + stored, strides)
            return np.swapaxes(view, 1, 2) if transposed else view

        a = matrices(A, m, k, lda, stride_a, transa == cublas.CUBLAS_OP_T)
        b = matrices(B, k, n, ldb, stride_b, transb == cublas.CUBLAS_OP_T)
        c = matrices(C, m, n, ldc, stride_c, False)
        c[...] = a @ b
        return 0

    def cublasSgemmStridedBatched(self, *args):
        return self._gemm("float32", *args)

    def cublasDgemmStridedBatched(self, *args):
        return self._gemm("float64", *args)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_cublas_gemm_converts_row_major_calls_to_column_major(dtype):
    """Cublas.gemm's operand swap, against a column-major gemm (cuBLAS itself never ran)."""
    handle = cublas.Cublas.__new__(cublas.Cublas)
    handle.library, handle.handle = _ColumnMajorLibrary(), None
    rng = np.random.default_rng(6)
    batch, m, n, k = 3, 4, 5, 2
    a = rng.standard_normal((batch, k, m)).astype(dtype)    # stored transposed
    b = rng.standard_normal((batch, k, n)).astype(dtype)    # row-major
    c = np.zeros((batch, m, n), dtype)
    handle.gemm(GemmCall(dtype, m, n, k, batch, GemmOperand(a.ctypes.data, True, m, k * m),
                         GemmOperand(b.ctypes.data, False, n, k * n),
                         GemmOperand(c.ctypes.data, False, n, m * n)))
    np.testing.assert_allclose(c, np.swapaxes(a, 1, 2) @ b, rtol=1e-5)


def test_missing_cublas_is_one_clear_error(monkeypatch):
    monkeypatch.setattr(cublas, "wheel_library_dirs", lambda: [])
    monkeypatch.setattr(cublas, "_load_through_cupy", lambda: None)
    monkeypatch.setattr(cublas, "_load_by_soname", lambda: None)
    cublas.load_cublas.cache_clear()
    try:
        with pytest.raises(cublas.CublasUnavailableError, match="nvidia-cublas-cu12"):
            cublas.load_cublas()
    finally:
        cublas.load_cublas.cache_clear()


# -- shared variables on the device -------------------------------------------------------------


def _sgd(device_name: str):
    rng = np.random.default_rng(7)
    W = tj.shared(rng.standard_normal((5, 3)), name="W")
    b = tj.shared(np.zeros(3), name="b")
    X, Y = T.dmatrix("X"), T.dmatrix("Y")
    cost = T.sum((X @ W + b - Y) ** 2)
    gW, gb = tj.grad(cost, [W, b])
    with tj.config.change(device=device_name):
        train = tj.function([X, Y], cost, updates={W: W - 0.01 * gW, b: b - 0.01 * gb})
    return train, W, b


def _copies(device: EmulatedDevice) -> tuple[int, int]:
    return len(device.uploads), len(device.downloads)


def _copies_per_call(runner, explicit_inputs: int, outputs: int) -> tuple[int, int]:
    """The copies a call makes besides shared values: inputs in, outputs out, shape
    vectors in, each host round trip's results in, and the inputs of round trips, reshapes
    and index views that were not computed on the host (those have host copies)."""
    from tracejit.codegen.kernel_ir import PythonCall, ShapeVector
    steps = runner.program.steps
    on_host: set[int] = set(runner.host_constants)
    uploads, downloads = explicit_inputs, outputs
    for number, step in enumerate(steps):
        if isinstance(step, ShapeVector):
            uploads += 1
            on_host.add(step.output.index)
        elif isinstance(step, PythonCall):
            kind = runner.device_steps.get(number)
            if kind in ("matmul", "tensordot", "softmax"):
                continue
            read = step.inputs if kind is None else step.inputs[1:]
            downloads += sum(b.index not in on_host for b in read)
            if kind is None:
                uploads += len(step.outputs)
                on_host.update(b.index for b in step.outputs)
            elif step.inputs[0].index in on_host:
                on_host.add(step.outputs[0].index)
    return uploads, downloads


def test_repeated_calls_do_not_copy_shared_values(device):
    train, W, b = _sgd("cuda")
    reference, W_cpu, b_cpu = _sgd("cpu")
    assert train._runner.device_steps  # X @ W and its gradient run as device gemms
    per_call = _copies_per_call(train._runner, explicit_inputs=2, outputs=1)
    rng = np.random.default_rng(8)
    batches = [(rng.standard_normal((4, 5)), rng.standard_normal((4, 3))) for _ in range(5)]
    before = _copies(device)
    for number, (x, y) in enumerate(batches):
        np.testing.assert_allclose(train(x, y), reference(x, y), rtol=1e-12)
        uploads, downloads = _copies(device)
        # The shared values go in once, on the first call; updates never come out.
        assert (uploads - before[0], downloads - before[1]) == \
            (per_call[0] + (2 if number == 0 else 0), per_call[1])
        before = (uploads, downloads)
    assert type(W.container) is DeviceValueContainer and W.container.host_stale
    np.testing.assert_allclose(W.get_value(), W_cpu.get_value(), rtol=1e-12)
    np.testing.assert_allclose(b.get_value(), b_cpu.get_value(), rtol=1e-12)
    # get_value copied each value to the host once; reading again copies nothing.
    after_read = _copies(device)
    W.get_value(), b.get_value(borrow=True)
    assert _copies(device) == after_read and W.container.downloads == 1


def test_set_value_replaces_the_device_copy(device):
    train, W, b = _sgd("cuda")
    x, y = np.ones((2, 5)), np.zeros((2, 3))
    train(x, y)
    W.set_value(np.zeros((5, 3)))
    b.set_value(np.full(3, 2.0))
    uploads = len(device.uploads)
    assert train(x, y) == pytest.approx(2 * 3 * 4.0)  # the new values were used
    per_call = _copies_per_call(train._runner, explicit_inputs=2, outputs=1)
    assert len(device.uploads) - uploads == per_call[0] + 2  # both new values went in
    np.testing.assert_allclose(b.get_value(), np.full(3, 2.0 - 0.01 * 2 * 2 * 2.0))


def test_a_failing_call_changes_no_shared_value(device):
    train, W, b = _sgd("cuda")
    train(np.ones((2, 5)), np.zeros((2, 3)))
    W_before, b_before = W.get_value(), b.get_value()
    train(np.ones((2, 5)), np.zeros((2, 3)))  # a device update, not read back
    stale = W.container.device_value
    with pytest.raises(ValueError, match=f"(.|\n)*{THIS_FILE}"):
        train(np.ones((2, 4)), np.zeros((2, 3)))  # inner dimensions differ
    assert W.container.device_value is stale
    assert not np.allclose(W.get_value(), W_before) and not np.allclose(b.get_value(), b_before)


def test_compiled_function_updates_stay_on_the_device(device):
    count = tj.shared(np.array(0, dtype=np.int64), name="count")
    total = tj.shared(np.zeros(4), name="total")

    @tj.compile(device="cuda")
    def accumulate(x):
        tj.update({count: count + 1, total: total + x})
        return (total + x).sum()

    x = np.arange(4.0)
    accumulate(x)
    uploads, downloads = _copies(device)
    for _ in range(3):
        accumulate(x)
    assert _copies(device) == (uploads + 3, downloads + 3)  # x in, the sum out
    assert count.get_value() == 4
    np.testing.assert_allclose(total.get_value(), 4 * x)


def test_swapping_updates_on_the_device(device):
    a, b = tj.shared(np.array([1.0, 2.0]), name="a"), tj.shared(np.array([3.0]), name="b")
    with tj.config.change(device="cuda"):
        swap = tj.function([], None, updates=[(a, b), (b, a)])
    swap()
    np.testing.assert_array_equal(a.get_value(), [3.0])
    np.testing.assert_array_equal(b.get_value(), [1.0, 2.0])
    swap()
    swap()
    np.testing.assert_array_equal(a.get_value(), [3.0])


def test_cpu_and_cuda_functions_share_a_variable(device):
    v = tj.shared(np.array([1.0, 2.0]), name="v")
    with tj.config.change(device="cuda"):
        double_on_device = tj.function([], v.sum(), updates={v: v * 2})
    add_on_cpu = tj.function([], v.sum(), updates={v: v + 1})
    assert double_on_device() == 3.0       # v = [2, 4] on the device
    assert add_on_cpu() == 6.0             # reads the device value, v = [3, 5] on the host
    assert double_on_device() == 8.0       # uploads the CPU's value, v = [6, 10]
    np.testing.assert_array_equal(v.get_value(), [6.0, 10.0])


def test_the_cpu_path_keeps_a_plain_container():
    v = tj.shared(np.ones(3), name="v")
    step = tj.function([], v.sum(), updates={v: v + 1})
    step()
    assert type(v.container) is list
    assert "run" not in vars(step)  # no per-call hook on the CPU path


def test_an_update_never_keeps_the_callers_device_memory():
    v = tj.shared(np.zeros(3), name="v")
    x = T.dvector("x")
    fgraph = FunctionGraph([x, v], [x.sum(), x], clone=False)
    device = EmulatedDevice()
    runner = cuda_runner(fgraph, "FAST_RUN", device=device)
    caller = _device_object(device, np.arange(3.0))
    runner.run_with_shared([caller], [v], [v])
    caller.memory[:] = 0  # the caller reuses its memory
    np.testing.assert_array_equal(v.get_value(), [0.0, 1.0, 2.0])
