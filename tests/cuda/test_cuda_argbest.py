"""device="cuda": argmax and argmin as row kernels (tracejit/cuda/argbest.py), on the emulated
device, against NumPy: the first extreme, the first NaN."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T


@pytest.mark.parametrize("dtype", ["float64", "float32", "int8", "uint16", "int64", "bool"])
def test_every_axis_matches_numpy(device, dtype):
    x = T.TensorType(dtype, (False, False, False))("x")
    outputs = [T.argmax(x, axis=axis) for axis in (0, 1, 2, None)] + \
        [T.argmin(x, axis=axis) for axis in (0, 2, None)]
    on_device = tj.function([x], outputs, device="cuda")
    assert not on_device._runner.reference_nodes
    value = np.random.default_rng(8).integers(0, 4, (3, 5, 40)).astype(dtype)  # many ties
    if dtype.startswith("float"):
        value[1, 2, 7] = value[0, 0, 5] = np.nan
        value[2, :, 3] = np.nan
    expected = [np.argmax(value, axis=a) for a in (0, 1, 2, None)] + \
        [np.argmin(value, axis=a) for a in (0, 2, None)]
    for actual, wanted in zip(on_device(value), expected):
        np.testing.assert_array_equal(actual, wanted)
    assert device.guards_intact()


def test_strided_inputs_and_empty_axes(device):
    x = T.dmatrix("x")
    on_device = tj.function([x], T.argmax(x.T[::-1], axis=1), device="cuda")
    value = np.random.default_rng(9).standard_normal((6, 4))
    np.testing.assert_array_equal(on_device(value), np.argmax(value.T[::-1], axis=1))
    assert "tj_kernel_pack" in [name for name, _, _ in device.launches]
    np.testing.assert_array_equal(on_device(np.ones((3, 0))), np.zeros(0, np.int64))
    with pytest.raises(ValueError, match="empty sequence"):
        on_device(np.ones((0, 3)))
