"""Device arrays as arguments of tj.compile and tj.function (SPEC section 5).

Objects with ``__cuda_array_interface__`` are taken where they lie by a
function compiled for device="cuda", and its outputs then stay on the
device; a CPU function refuses them with one clear error. Everything runs
on the emulated device (tracejit/cuda/shim.py), whose arrays expose the
interface and ``copy_to_host`` as numba's do.
"""

from __future__ import annotations

import types

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.cuda.interface import is_device_array, read_layout
from tracejit.cuda.shim import EmulatedDeviceArray



def _on_host(value) -> np.ndarray:
    assert isinstance(value, EmulatedDeviceArray), f"expected a device array, got {type(value)}"
    return value.copy_to_host()


# -- tj.compile ----------------------------------------------------------------------------------

def test_compiled_function_takes_device_arrays_and_returns_device_arrays(device):
    @tj.compile(device="cuda")
    def predict(params, x):
        return np.tanh(x @ params["W"] + params["b"]), (x * 2).sum(axis=1)

    rng = np.random.default_rng(0)
    W, b, x = rng.standard_normal((4, 3)), rng.standard_normal(3), rng.standard_normal((5, 4))
    params = {"W": device.to_device(W), "b": device.to_device(b)}
    hidden, sums = predict(params, device.to_device(x))
    np.testing.assert_allclose(_on_host(hidden), np.tanh(x @ W + b), rtol=1e-12)
    np.testing.assert_allclose(_on_host(sums), (x * 2).sum(axis=1), rtol=1e-12)
    # NumPy arguments select the same specialization and come back as NumPy arrays.
    host_hidden, _ = predict({"W": W, "b": b}, x)
    assert type(host_hidden) is np.ndarray and predict.trace_count == 1
    np.testing.assert_allclose(host_hidden, np.tanh(x @ W + b), rtol=1e-12)
    # One device argument among host ones is enough to keep the outputs on the device.
    mixed, _ = predict({"W": W, "b": b}, device.to_device(x))
    np.testing.assert_allclose(_on_host(mixed), np.tanh(x @ W + b), rtol=1e-12)


def test_device_arguments_are_keyed_by_dtype_and_length_one_dimensions(device):
    @tj.compile(device="cuda")
    def double(x):
        return x * 2

    double(device.to_device(np.ones((3, 4))))
    double(device.to_device(np.ones((5, 2))))
    assert double.trace_count == 1
    out = double(device.to_device(np.ones((3, 4), dtype=np.float32)))
    assert out.dtype == np.float32 and double.trace_count == 2
    double(device.to_device(np.ones((1, 4))))  # a broadcastable row is another signature
    assert double.trace_count == 3
    assert double.graph(device.to_device(np.ones((1, 4)))).inputs[0].broadcastable == (True, False)


def test_a_device_output_never_aliases_a_device_input(device):
    @tj.compile(device="cuda")
    def passthrough(x):
        return x, x.T

    x = device.to_device(np.arange(6.0).reshape(2, 3))
    same, transposed = passthrough(x)
    pointer = x.__cuda_array_interface__["data"][0]
    assert same.__cuda_array_interface__["data"][0] != pointer
    assert transposed.__cuda_array_interface__["data"][0] != pointer
    np.testing.assert_array_equal(_on_host(transposed), np.arange(6.0).reshape(2, 3).T)


def test_a_cpu_function_refuses_device_arrays_with_a_clear_error(device):
    @tj.compile
    def double(x):
        return x * 2

    with pytest.raises(TypeError, match=r"argument 'x' is a CUDA device array, but this "
                                        r"function runs on the CPU(.|\n)*device='cuda'"):
        double(device.to_device(np.ones(3)))
    x = T.dvector("x")
    on_cpu = tj.function([x], x * 2)
    with pytest.raises(TypeError, match=r"input 0 \('x'\).* is a CUDA device array(.|\n)*"
                                        r"copy_to_host"):
        on_cpu(device.to_device(np.ones(3)))


# -- tj.function ---------------------------------------------------------------------------------

def test_function_checks_device_arguments_without_converting_them(device):
    x, row = T.dmatrix("x"), T.TensorType("float64", (True, False))("row")
    with tj.config.change(device="cuda"):
        add = tj.function([x, row], x + row)
    out = add(device.to_device(np.ones((2, 3))), device.to_device(np.arange(3.0)[None]))
    np.testing.assert_array_equal(_on_host(out), 1 + np.arange(3.0)[None].repeat(2, axis=0))
    with pytest.raises(TypeError, match=r"input 0 \('x'\).*float32 device array but the input "
                                        r"is float64; device arrays are not converted"):
        add(device.to_device(np.ones((2, 3), np.float32)), np.ones((1, 3)))
    with pytest.raises(TypeError, match=r"input 1 \('row'\).*dimension 0 is broadcastable"):
        add(np.ones((2, 3)), device.to_device(np.ones((2, 3))))
    with pytest.raises(TypeError, match=r"input 0 \('x'\).*expected 2 dimensions, got 1"):
        add(device.to_device(np.ones(3)), np.ones((1, 3)))


def test_an_sgd_step_on_device_batches_keeps_everything_on_the_device(device):
    rng = np.random.default_rng(3)
    W0 = rng.standard_normal((4, 2))
    batches = [(rng.standard_normal((6, 4)), rng.standard_normal((6, 2))) for _ in range(3)]

    def build(device_name: str):
        W = tj.shared(W0.copy(), name="W")
        X, Y = T.dmatrix("X"), T.dmatrix("Y")
        cost = T.mean((X @ W - Y) ** 2)
        with tj.config.change(device=device_name):
            return tj.function([X, Y], cost, updates={W: W - 0.1 * tj.grad(cost, W)}), W

    train, W = build("cuda")
    reference, W_cpu = build("cpu")
    for x, y in batches:
        cost = train(device.to_device(x), device.to_device(y))
        np.testing.assert_allclose(_on_host(cost), reference(x, y), rtol=1e-12)
    np.testing.assert_allclose(W.get_value(), W_cpu.get_value(), rtol=1e-12)


@pytest.mark.parametrize("mode, profile", [("DEBUG_MODE", False), ("FAST_RUN", True)])
def test_debug_mode_and_profiling_stage_device_arguments_through_the_host(device, mode, profile):
    v = tj.shared(np.array([1.0, 2.0]), name="v")
    x = T.dvector("x")
    with tj.config.change(device="cuda"):
        step = tj.function([x], [x * v, T.sum(x)], updates={v: v + x}, mode=mode,
                           profile=profile)
    scaled, total = step(device.to_device(np.array([3.0, 4.0])))
    np.testing.assert_array_equal(_on_host(scaled), [3.0, 8.0])
    np.testing.assert_array_equal(_on_host(total), 7.0)
    np.testing.assert_array_equal(v.get_value(), [4.0, 6.0])
    host_scaled, _ = step(np.array([1.0, 1.0]))  # NumPy in, NumPy out
    assert type(host_scaled) is np.ndarray
    np.testing.assert_array_equal(host_scaled, [4.0, 6.0])
    if profile:
        assert step.profile.calls == 2


# -- reading the interface ----------------------------------------------------------------------

def _interface_object(**interface):
    base = {"shape": (2,), "typestr": "<f8", "data": (0, False), "version": 3}
    return types.SimpleNamespace(__cuda_array_interface__={**base, **interface})


def test_reading_the_interface():
    layout = read_layout(_interface_object(shape=(2, 3), strides=(8, 16), data=(4096, False)))
    assert (layout.ptr, layout.dtype, layout.shape, layout.strides, layout.ndim) == \
        (4096, np.dtype("float64"), (2, 3), (8, 16), 2)
    assert read_layout(_interface_object()).strides is None
    assert not is_device_array(np.ones(2)) and is_device_array(_interface_object())
    with pytest.raises(TypeError, match="mask"):
        read_layout(_interface_object(mask=_interface_object()))
    with pytest.raises(TypeError, match="dtype"):
        read_layout(_interface_object(typestr="|O"))


def test_unusable_device_arrays_are_named_in_the_error(device):
    @tj.compile(device="cuda")
    def double(x):
        return x * 2

    with pytest.raises(TypeError, match=r"argument 'x'.*mask"):
        double(_interface_object(mask=_interface_object()))
