"""device="cuda": set_subtensor / inc_subtensor with basic indices as strided update kernels
(tracejit/cuda/strided_writes.py), on the emulated device, against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T



def _updates_on_device(function) -> None:
    left = [str(n.op) for n in function._runner.reference_nodes if "Subtensor" in str(n.op)]
    assert not left, left


@pytest.mark.parametrize("dtype", ["float64", "float32", "int8", "uint16", "int64", "bool"])
@pytest.mark.parametrize("build", [
    lambda x, y, i: T.inc_subtensor(x[:, 1:3], y),
    lambda x, y, i: T.set_subtensor(x[i, ::-2], y),
    lambda x, y, i: T.inc_subtensor(x[1], y[:1]),          # a length-1 value broadcasts
    lambda x, y, i: T.inc_subtensor(x[:, :, None, 2], 1),  # a scalar, through newaxis
], ids=["inc-slice", "set-reversed", "inc-broadcast", "inc-scalar"])
def test_updates_match_the_reference(device, dtype, build):
    x = T.TensorType(dtype, (False, False, False))("x")
    y, i = T.TensorType(dtype, (False,))("y"), T.lscalar("i")
    out = build(x, y, i)
    inputs = [x, y, i]
    on_device = tj.function(inputs, [out, i + 0], device="cuda")
    reference = tj.function(inputs, [out, i + 0], mode="FAST_COMPILE")
    _updates_on_device(on_device)
    value = (np.arange(40) % 7).astype(dtype).reshape(2, 5, 4)
    addend = (np.arange(4) % 3 + 1).astype(dtype)
    for index in (1, -2):
        np.testing.assert_array_equal(on_device(value, addend, index)[0],
                                      reference(value, addend, index)[0])
    assert device.guards_intact()


def test_integer_additions_wrap_as_in_numpy(device):
    x, y = T.bvector("x"), T.bvector("y")
    on_device = tj.function([x, y], T.inc_subtensor(x[1:], y), device="cuda")
    value, addend = np.array([1, 120, -120], np.int8), np.array([100, -100], np.int8)
    expected = value.copy()
    expected[1:] += addend
    np.testing.assert_array_equal(on_device(value, addend), expected)


def test_the_gradient_of_a_slice_stays_on_the_device(device):
    x = T.dmatrix("x")
    cost = (x[:, 1:] ** 2).sum() + x[0, 0]
    on_device = tj.function([x], tj.grad(cost, x), device="cuda")
    _updates_on_device(on_device)
    value = np.arange(12.0).reshape(3, 4)
    expected = np.zeros_like(value)
    expected[:, 1:] = 2 * value[:, 1:]
    expected[0, 0] += 1
    np.testing.assert_array_equal(on_device(value), expected)


def test_errors_name_the_op_and_the_line(device):
    x, y, i = T.dmatrix("x"), T.dmatrix("y"), T.lscalar("i")
    widen = tj.function([x, y], T.inc_subtensor(x[:, :2], y), device="cuda")
    with pytest.raises(ValueError, match=r"(?s)IncSubtensor.*could not broadcast input array "
                                         r"from shape \(3, 3\) into shape \(3, 2\).*"
                                         r"test_cuda_strided_writes.py"):
        widen(np.ones((3, 4)), np.ones((3, 3)))
    row = tj.function([x, y, i], T.set_subtensor(x[i], y[0]), device="cuda")
    with pytest.raises(IndexError, match=r"(?s)SetSubtensor.*out of bounds.*"
                                         r"test_cuda_strided_writes.py"):
        row(np.ones((3, 4)), np.ones((1, 4)), 3)


@pytest.mark.parametrize("dtype", ["float64", "int16", "bool"])
def test_alloc_broadcasts_its_value_into_fresh_memory(device, dtype):
    value, rows = T.TensorType(dtype, (False,))("value"), T.lscalar("rows")
    on_device = tj.function([value, rows], T.alloc(value, rows, 3), device="cuda")
    assert not on_device._runner.reference_nodes
    filler = (np.arange(3) % 2).astype(dtype)
    np.testing.assert_array_equal(on_device(filler, 4), np.broadcast_to(filler, (4, 3)))
    np.testing.assert_array_equal(on_device(filler, 0), np.empty((0, 3), dtype))
    with pytest.raises(ValueError):
        on_device(np.ones(2, dtype), 4)  # does not broadcast: the reference's error


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_concatenate_copies_each_piece_into_place(device, axis):
    a, b = T.dmatrix("a"), T.dmatrix("b")
    joined = T.concatenate([a, b.T, a * 2], axis=axis)
    on_device = tj.function([a, b], joined, device="cuda")
    reference = tj.function([a, b], joined, mode="FAST_COMPILE")
    assert not on_device._runner.reference_nodes
    left, right = np.arange(6.0).reshape(2, 3), np.arange(6.0, 12.0).reshape(3, 2)
    np.testing.assert_array_equal(on_device(left, right), reference(left, right))
    with pytest.raises(ValueError, match="dimensions except for the concatenation axis"):
        on_device(left, np.ones((4, 4)))
