"""device="cuda": conv2d as a patch gather and a gemm (tracejit/cuda/conv.py), with its
gradients, on the emulated device, against the NumPy reference."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T


def _conv_and_grads(dtype: str, **options):
    x = T.TensorType(dtype, (False,) * 4)("x")
    w = T.TensorType(dtype, (False,) * 4)("w")
    out = T.conv2d(x, w, **options)
    outputs = [out, *tj.grad((out ** 2).sum(), [x, w])]
    return (tj.function([x, w], outputs, device="cuda"),
            tj.function([x, w], outputs, mode="FAST_COMPILE"))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("options", [
    dict(border_mode="valid"), dict(border_mode="full", filter_flip=False),
    dict(border_mode="half", subsample=(2, 1)), dict(border_mode=(1, 2), subsample=(2, 2)),
], ids=str)
def test_convolutions_and_their_gradients_match_the_reference(device, dtype, options):
    on_device, reference = _conv_and_grads(dtype, **options)
    assert not on_device._runner.reference_nodes  # forward and backward on the device
    rng = np.random.default_rng(6)
    x = rng.standard_normal((2, 3, 7, 6)).astype(dtype)
    w = rng.standard_normal((4, 3, 3, 3)).astype(dtype)
    tolerance = 1e-4 if dtype == "float32" else 1e-11
    for actual, expected in zip(on_device(x, w), reference(x, w)):
        np.testing.assert_allclose(actual, expected, rtol=tolerance, atol=tolerance)
    assert device.guards_intact()


def test_strided_filters_are_packed_and_zero_channels_give_zeros(device):
    x, w = T.dtensor4("x"), T.dtensor4("w")
    on_device = tj.function([x, w], T.conv2d(x, w.dimshuffle(1, 0, 2, 3)), device="cuda")
    reference = tj.function([x, w], T.conv2d(x, w.dimshuffle(1, 0, 2, 3)), mode="FAST_COMPILE")
    rng = np.random.default_rng(7)
    value, filters = rng.standard_normal((1, 2, 5, 5)), rng.standard_normal((2, 3, 2, 2))
    np.testing.assert_allclose(on_device(value, filters), reference(value, filters), rtol=1e-12)
    assert "tj_kernel_pack" in [name for name, _, _ in device.launches]
    empty = on_device(np.ones((1, 0, 4, 4)), np.ones((0, 3, 2, 2)))
    np.testing.assert_array_equal(empty, np.zeros((1, 3, 3, 3)))


def test_shapes_the_reference_rejects_raise_its_error(device):
    x, w = T.dtensor4("x"), T.dtensor4("w")
    on_device = tj.function([x, w], T.conv2d(x, w), device="cuda")
    with pytest.raises(ValueError, match="channels"):
        on_device(np.ones((1, 2, 5, 5)), np.ones((3, 4, 2, 2)))
    with pytest.raises(ValueError, match="larger than"):
        on_device(np.ones((1, 2, 2, 2)), np.ones((3, 2, 3, 3)))
