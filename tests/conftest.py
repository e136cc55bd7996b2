"""Suite-wide settings.

Tests check the compiled code itself, so a first call waits for its module
instead of starting on the interpreter (``config.background_compile`` is
the default for users; tests/runtime/test_tiered_runner.py covers it).
"""

import os

import tracejit as tj

tj.config.background_compile = False

if os.environ.get("TRACEJIT_TEST_DEVICE") == "emulated":
    # device="cuda" on the emulated device (tests/ops/ops_helpers.py runs the op table there).
    import tracejit.cuda.runtime as cuda_runtime
    from tracejit.cuda.shim import EmulatedDevice

    _emulated = EmulatedDevice(block_size=32, max_blocks=4)
    cuda_runtime.default_device = lambda: _emulated
