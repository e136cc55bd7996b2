"""Examples of the seed texts with device="cuda", on the emulated device: whole programs
(traced gradients, shared variables, updates, gathers) through the CUDA runner."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[2] / "examples"

# Each example in a fresh process, with every compiled function on the emulated device.
RUN_ON_EMULATED_DEVICE = """
import runpy, sys
import tracejit as tj
import tracejit.cuda.runtime as runtime
from tracejit.cuda.shim import EmulatedDevice
device = EmulatedDevice(block_size=32, max_blocks=8)
runtime.default_device = lambda: device
tj.config.device = "cuda"
tj.config.background_compile = False
runpy.run_path(sys.argv[1], run_name="__main__")
print("launches", len(device.launches), "gemms", len(device.gemms), "guards",
      device.guards_intact())
"""


@pytest.mark.parametrize("script, expected", [
    ("logistic_regression_compile.py", "gradients agree"),
    ("seed003_gradient_check.py", "T.grad(E, w) == -(y - mu).dot(X): True"),
])
def test_example_runs_on_the_device(script, expected):
    done = subprocess.run([sys.executable, "-c", RUN_ON_EMULATED_DEVICE, str(EXAMPLES / script)],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert expected in done.stdout
    last = done.stdout.strip().splitlines()[-1].split()
    assert int(last[1]) > 0 and int(last[3]) > 0 and last[5] == "True", last  # ran on it
