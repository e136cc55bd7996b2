"""device="cuda" on a machine without a usable GPU: one clear error at the first call."""

from __future__ import annotations

import numpy as np
import pytest

import tracejit as tj
import tracejit.tensor as T
from tracejit.cuda.runtime import CudaUnavailableError


def _gpu_usable() -> bool:
    try:
        from numba import cuda
        return bool(cuda.is_available())
    except Exception:
        return False


pytestmark = pytest.mark.skipif(_gpu_usable(), reason="a GPU is usable here")


def test_compiled_function_raises_one_clear_error():
    @tj.compile(device="cuda")
    def double(x):
        return x * 2

    with pytest.raises(CudaUnavailableError, match="device='cuda' needs an NVIDIA GPU"
                                                   "(.|\n)*Use device='cpu'"):
        double(np.ones(3))
    assert issubclass(CudaUnavailableError, RuntimeError)


def test_theano_style_function_and_config_flag_raise_the_same_error():
    x = T.dvector("x")
    with pytest.raises(CudaUnavailableError, match="device='cuda'"):
        with tj.config.change(device="cuda"):
            tj.function([x], T.exp(x))([1.0])
