"""device="cuda": softmax and log_softmax as row kernels (tracejit/cuda/rows.py), on the
emulated device, against the NumPy reference of the op."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.cuda.shim import EmulatedDevice


@pytest.fixture
def device(monkeypatch):
    import tracejit.cuda.runtime as runtime
    # Odd, small grids: several rows per block, partial warps, rows longer than a block.
    emulated = EmulatedDevice(block_size=33, max_blocks=3)
    monkeypatch.setattr(runtime, "default_device", lambda: emulated)
    return emulated


def _both(build, dtype: str, ndim: int):
    x = T.TensorType(dtype, (False,) * ndim)("x")
    out = build(x)
    return tj.function([x], out, device="cuda"), tj.function([x], out, mode="FAST_COMPILE")


def _check(on_device, reference, value, dtype) -> None:
    actual, expected = on_device(value), reference(value)
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    rtol = 2e-5 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=1e-7, equal_nan=True)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("log", [False, True])
@pytest.mark.parametrize("shape, axis", [((5, 70), 1), ((5, 7), 0), ((2, 3, 4), 1),
                                         ((3, 1), 1), ((4, 0), 1), ((0, 4), 1), ((6,), 0)])
def test_rows_match_the_reference(device, dtype, log, shape, axis):
    op = T.log_softmax if log else T.softmax
    on_device, reference = _both(lambda x: op(x, axis=axis), dtype, len(shape))
    assert not on_device._runner.reference_nodes  # no host round trip
    value = (np.random.default_rng(1).standard_normal(shape) * 20).astype(dtype)
    _check(on_device, reference, value, dtype)
    assert device.guards_intact()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_nan_and_infinite_rows_follow_the_reference(device, dtype):
    on_device, reference = _both(lambda x: T.softmax(x, axis=1), dtype, 2)
    value = np.array([[0.0, np.nan, 1.0], [np.inf, 1.0, 2.0], [-np.inf, -np.inf, -np.inf],
                      [-np.inf, 0.0, 3.0], [1e30, 1e30, -1e30]], dtype=dtype)
    _check(on_device, reference, value, dtype)
    log_device, log_reference = _both(lambda x: T.log_softmax(x, axis=1), dtype, 2)
    _check(log_device, log_reference, value, dtype)


def test_strided_inputs_are_packed_on_the_device(device):
    on_device, reference = _both(lambda x: T.softmax(x.T, axis=1), "float64", 2)
    value = np.random.default_rng(2).standard_normal((6, 5))
    _check(on_device, reference, value, "float64")
    names = [name for name, _, _ in device.launches]
    assert "tj_kernel_pack" in names and "tj_kernel_softmax_float64" in names
    before = len(device.launches)
    on_device(np.ascontiguousarray(value[:, :3]))  # other lengths, same code
    assert len(device.launches) > before


def test_a_hand_written_softmax_runs_on_the_device(device):
    @tj.compile(device="cuda")
    def probabilities(x):
        e = np.exp(x - x.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    value = np.random.default_rng(3).standard_normal((8, 40)).astype(np.float32)
    x_on_device = device.to_device(value)
    result = probabilities(x_on_device).copy_to_host()
    expected = np.exp(value - value.max(axis=1, keepdims=True))
    np.testing.assert_allclose(result, expected / expected.sum(axis=1, keepdims=True),
                               rtol=2e-5)
    # The rewritten graph keeps the user's shift: softmax(x - max(x)), all on the device.
    assert "tj_kernel_softmax_float32" in [name for name, _, _ in device.launches]
    assert not probabilities._entry((x_on_device,), {}).function._runner.reference_nodes


def test_integer_inputs_keep_the_host_round_trip(device):
    x = T.imatrix("x")
    on_device = tj.function([x], T.softmax(x), device="cuda")
    assert [str(node.op) for node in on_device._runner.reference_nodes] == ["Softmax{axis=1}"]
    value = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_allclose(on_device(value), tj.function([x], T.softmax(x))(value),
                               rtol=1e-12)
