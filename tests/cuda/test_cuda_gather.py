"""device="cuda": gathers through integer index arrays and their scatter-add gradients
(tracejit/cuda/gather.py), on the emulated device, against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T



def _no_indexing_round_trips(function) -> None:
    left = [str(n.op) for n in function._runner.reference_nodes if "Subtensor" in str(n.op)]
    assert not left, left


@pytest.mark.parametrize("dtype", ["float64", "float32", "int8", "int16", "bool"])
def test_gathers_match_the_reference(device, dtype):
    x = T.TensorType(dtype, (False, False, False))("x")
    rows, columns = T.lvector("rows"), T.lmatrix("columns")
    outputs = [x[rows], x[rows, columns], x[columns]]
    on_device = tj.function([x, rows, columns], outputs, device="cuda")
    reference = tj.function([x, rows, columns], outputs, mode="FAST_COMPILE")
    _no_indexing_round_trips(on_device)
    value = (np.arange(3 * 4 * 5) % 11).astype(dtype).reshape(3, 4, 5)
    picks = np.array([2, -1, 0, 1])
    grid = np.array([[0, 2, -3, 1]])  # broadcasts against picks
    for actual, expected in zip(on_device(value, picks, grid), reference(value, picks, grid)):
        np.testing.assert_array_equal(actual, expected)
    assert device.guards_intact()


def test_an_index_out_of_range_raises_numpys_error(device):
    x, rows = T.dmatrix("x"), T.lvector("rows")
    on_device = tj.function([x, rows], x[rows] * 2, device="cuda")
    with pytest.raises(IndexError, match="index 3 is out of bounds for axis 0 with size 3"):
        on_device(np.ones((3, 2)), np.array([0, 3]))
    with pytest.raises(IndexError, match="out of bounds"):
        on_device(np.ones((3, 2)), np.array([-4]))
    np.testing.assert_array_equal(on_device(np.ones((3, 2)), np.array([-3])), [[2.0, 2.0]])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_repeated_indices_accumulate_like_add_at(device, dtype):
    x, y, rows = T.TensorType(dtype, (False, False))("x"), \
        T.TensorType(dtype, (False, False))("y"), T.lvector("rows")
    out = T.inc_subtensor(x[rows], y)
    on_device = tj.function([x, y, rows], out, device="cuda")
    _no_indexing_round_trips(on_device)
    value = np.arange(12, dtype=dtype).reshape(4, 3)
    addend = np.ones((5, 3), dtype=dtype)
    picks = np.array([1, 1, -1, 0, 1])
    expected = value.copy()
    np.add.at(expected, picks, addend)
    np.testing.assert_allclose(on_device(value, addend, picks), expected, rtol=1e-6)


def test_the_classifier_loss_and_its_gradient_stay_on_the_device(device):
    logits, labels = T.dmatrix("logits"), T.lvector("labels")
    log_p = T.log_softmax(logits)
    nll = -T.mean(log_p[T.arange(labels.shape[0]), labels])
    on_device = tj.function([logits, labels], [nll, tj.grad(nll, logits)], device="cuda")
    reference = tj.function([logits, labels], [nll, tj.grad(nll, logits)], mode="FAST_COMPILE")
    _no_indexing_round_trips(on_device)
    value = np.random.default_rng(4).standard_normal((6, 5))
    targets = np.array([0, 4, 2, 2, 1, 3])
    for actual, expected in zip(on_device(value, targets), reference(value, targets)):
        np.testing.assert_allclose(actual, expected, rtol=1e-12, atol=1e-15)


def test_set_through_index_arrays_keeps_the_host_round_trip(device):
    x, rows = T.dvector("x"), T.lvector("rows")
    on_device = tj.function([x, rows], T.set_subtensor(x[rows], 0.0), device="cuda")
    assert [str(n.op) for n in on_device._runner.reference_nodes] == \
        ["AdvancedSetSubtensor{[]}"]
    np.testing.assert_array_equal(on_device(np.ones(3), np.array([2, 2])), [1.0, 1.0, 0.0])
