"""The emulated device (tracejit/cuda/shim.py) standing in for the GPU of device="cuda"."""

from __future__ import annotations

import pytest

from tracejit.cuda.shim import EmulatedDevice


@pytest.fixture
def device(monkeypatch):
    """Small grids, so that grid-stride loops and partial warps run; it records every
    launch, copy and gemm call."""
    import tracejit.cuda.runtime as runtime
    emulated = EmulatedDevice(block_size=16, max_blocks=3)
    monkeypatch.setattr(runtime, "default_device", lambda: emulated)
    return emulated
