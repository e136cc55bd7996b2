"""device="cuda": Reshape and basic indexing as views of device memory (tracejit/cuda/views.py),
on the emulated device, against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T



def _both(inputs, output):
    return (tj.function(inputs, output, device="cuda"),
            tj.function(inputs, output, mode="FAST_COMPILE"))


def _no_round_trips(function) -> None:
    assert not function._runner.reference_nodes, function._runner.reference_nodes


@pytest.mark.parametrize("dtype", ["float64", "float32", "int8", "bool"])
@pytest.mark.parametrize("build", [
    lambda x: x.reshape((x.shape[0], -1)),            # C-ordered: a view
    lambda x: x.dimshuffle(2, 0, 1).reshape((-1,)),   # strided: packed first
    lambda x: x[:, ::-2].reshape((4, -1)),            # negative strides: packed first
    lambda x: (x * 2).reshape((2, -1)).sum(axis=1),   # a kernel reads the view
], ids=["view", "transposed", "reversed", "read-by-kernel"])
def test_reshapes_match_the_reference(device, dtype, build):
    x = T.TensorType(dtype, (False, False, False))("x")
    on_device, reference = _both([x], build(x))
    value = (np.arange(48) % 7).astype(dtype).reshape(2, 6, 4)
    np.testing.assert_array_equal(on_device(value), reference(value))
    assert device.guards_intact()


@pytest.mark.parametrize("index", [
    (1,), (slice(None), 2), (slice(None, None, -1), slice(1, None, 2)), (None, 0, slice(-2, None)),
    (-1, -1, -1), (slice(5, 1),), (0, None, slice(None, None, -3)),
], ids=str)
def test_basic_indexing_is_a_view(device, index):
    x = T.dtensor3("x")
    on_device, reference = _both([x], x[index] * 1.5)
    _no_round_trips(on_device)
    value = np.arange(60.0).reshape(3, 4, 5)
    np.testing.assert_array_equal(on_device(value), reference(value))


def test_symbolic_indices_and_their_bounds(device):
    x, i, j = T.dmatrix("x"), T.lscalar("i"), T.lscalar("j")
    on_device, reference = _both([x, i, j], x[i, j:] + 1)
    value = np.arange(12.0).reshape(3, 4)
    for a, b in [(0, 1), (-1, -3), (2, 9)]:
        np.testing.assert_array_equal(on_device(value, a, b), reference(value, a, b))
    with pytest.raises(IndexError, match=r"(?s)Subtensor.*out of bounds.*test_cuda_views.py"):
        on_device(value, 3, 0)


def test_a_returned_view_never_aliases_a_device_input(device):
    x = T.dmatrix("x")
    both = tj.function([x], [x.reshape((-1,)), x[1:], x.T.reshape((-1,))], device="cuda")
    host = np.arange(6.0).reshape(2, 3)
    value = device.to_device(host)
    flat, rows, transposed = both(value)
    pointers = {out.__cuda_array_interface__["data"][0] for out in (flat, rows, transposed)}
    assert value.__cuda_array_interface__["data"][0] not in pointers and len(pointers) == 3
    np.testing.assert_array_equal(flat.copy_to_host(), host.reshape(-1))
    np.testing.assert_array_equal(rows.copy_to_host(), host[1:])
    np.testing.assert_array_equal(transposed.copy_to_host(), host.T.reshape(-1))


def test_shapes_computed_on_the_host_are_not_downloaded(device):
    x = T.dtensor3("x")
    # (x.shape[0] * x.shape[1] would be a device kernel, its 8-byte result read back.)
    flatten_batch = tj.function([x], x.reshape((-1, x.shape[2])) * 2, device="cuda")
    value = np.ones((2, 3, 4))
    flatten_batch(value)
    downloads = len(device.downloads)
    np.testing.assert_array_equal(flatten_batch(value), np.full((6, 4), 2.0))
    assert len(device.downloads) - downloads == 1  # the result alone


def test_reshape_errors_name_the_op_and_the_line(device):
    x = T.dvector("x")
    on_device = tj.function([x], x.reshape((4, -1)), device="cuda")
    with pytest.raises(ValueError, match=r"(?s)Reshape.*cannot reshape array of size 6.*"
                                         r"test_cuda_views.py"):
        on_device(np.ones(6))
