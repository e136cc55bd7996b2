"""The GPU side of the harness (``--device cuda``): finding the device, inputs on it, waiting for it.

A workload's ``GPU_IMPLEMENTATIONS`` builders (next to its CPU ones) use
these helpers so that every library is measured the same way:

- the inputs are put on the device once, in the builder, outside the timing
  (numba device arrays for tracejit, CUDA tensors for torch, committed
  arrays for JAX);
- every timed call ends by waiting for the device (``synchronized``), so it
  covers the kernels and not only their launch;
- outputs stay on the device; the worker copies the first call's outputs
  to the host (``harness.to_numpy``) after its clock has stopped, and
  checks them against the workload's NumPy reference.

Without a usable GPU a builder raises ``harness.DeviceUnavailable`` with
one line saying why, and the worker reports the row as skipped.

Test only: with ``TRACEJIT_BENCH_EMULATED_CUDA=1`` in the environment, a
worker runs tracejit's rows on the emulated device of tracejit/cuda/shim.py
(the generated kernels compiled for the host and run over an emulated
grid). That checks the GPU builders end to end on a machine without a GPU;
its timings mean nothing, and torch and JAX are still skipped.
"""

from __future__ import annotations

import os
from typing import Any, Callable

import numpy as np

from benchmarks import peers
from benchmarks.harness import DeviceUnavailable

EMULATED_VARIABLE = "TRACEJIT_BENCH_EMULATED_CUDA"
EMULATED_NAME = "emulated CUDA device (tracejit host shim; timings mean nothing)"


def emulation_requested() -> bool:
    return os.environ.get(EMULATED_VARIABLE) == "1"


def install_emulated_device() -> None:
    """Make tracejit's default CUDA device the emulated one, for this process (tests only)."""
    from tracejit.cuda import runtime
    from tracejit.cuda.shim import EmulatedDevice
    device = EmulatedDevice()
    runtime.default_device = lambda: device


def synchronized(call: Callable[..., Any], synchronize: Callable[[], Any]) -> Callable[..., Any]:
    """``call`` followed by a wait for the device: what the harness times."""
    def timed(*args: Any) -> Any:
        result = call(*args)
        synchronize()
        return result
    return timed


def _first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


# -- tracejit ---------------------------------------------------------------------------------------

class TracejitDevice:
    """tracejit's current CUDA device (``tracejit.cuda.runtime.default_device()``).

    ``put`` makes a device-resident input: a numba device array on a GPU, an
    emulated device array under TRACEJIT_BENCH_EMULATED_CUDA.
    """

    def __init__(self) -> None:
        from tracejit.cuda import runtime
        try:
            self.device = runtime.default_device()
        except runtime.CudaUnavailableError as exc:
            raise DeviceUnavailable(" ".join(str(exc).split())) from None
        self.emulated = hasattr(self.device, "to_device")  # the shim's EmulatedDevice
        if self.emulated:
            self.name = EMULATED_NAME
        else:
            try:
                self.name = _numba_device_name()
            except Exception as exc:  # only the report's GPU line: never fail a row for it
                self.name = f"CUDA device (name unknown: {_first_line(exc)})"

    def put(self, host: np.ndarray) -> Any:
        if self.emulated:
            return self.device.to_device(host)
        from numba import cuda
        return cuda.to_device(np.ascontiguousarray(host))

    def synchronize(self) -> None:
        self.device.synchronize()


def round_trips(function: Any) -> str:
    """Which nodes of a compiled tracejit CUDA function (a ``tj.function``, or the entry of
    a ``tj.compile`` specialization) have no device kernel and run on the host, each
    with a copy of its inputs and outputs across the bus per call: the note that
    explains a slow GPU row. Read from tracejit's runner; "" where it is not there."""
    try:
        nodes = getattr(getattr(function, "_runner", None), "reference_nodes", None)
    except Exception as exc:  # only a note: never fail a measured row for it
        return f"(host round trips unknown: {type(exc).__name__})"
    if nodes is None:
        return ""
    names = dict.fromkeys(type(node.op).__name__ for node in nodes)
    return f"host round trips: {', '.join(names)}" if names else "every node on the device"


def compiled_round_trips(compiled: Any, *args: Any) -> str:
    """``round_trips`` of the specialization of a ``tj.compile`` function for ``args``."""
    entry = getattr(compiled, "_entry", None)
    if entry is None:
        return ""
    try:
        return round_trips(entry(args, {}).function)
    except Exception as exc:  # only a note: never fail a measured row for it
        return f"(host round trips unknown: {type(exc).__name__})"


def _numba_device_name() -> str:
    from numba import cuda
    device = cuda.get_current_device()
    name = device.name.decode() if isinstance(device.name, bytes) else str(device.name)
    major, minor = device.compute_capability
    try:
        from numba.cuda.cudadrv.driver import driver
        version = driver.get_version()
        driver_text = f", CUDA driver {version[0]}.{version[1]}"
    except Exception:  # only decoration for the report
        driver_text = ""
    return f"{name} (compute capability {major}.{minor}{driver_text})"


# -- torch ------------------------------------------------------------------------------------------

def torch_cuda() -> tuple[Any, Any, str]:
    """(torch, the CUDA device, its name), or DeviceUnavailable saying why not."""
    torch = peers.import_torch()
    if not torch.cuda.is_available():
        build = "a CPU-only build" if torch.version.cuda is None else f"built for CUDA {torch.version.cuda}"
        raise DeviceUnavailable(f"torch.cuda.is_available() is false (torch {torch.__version__}, {build})")
    return torch, torch.device("cuda"), f"{torch.cuda.get_device_name(0)} (torch CUDA {torch.version.cuda})"


def torch_on_device(torch: Any, host: np.ndarray, device: Any) -> Any:
    return torch.from_numpy(host).to(device)


# -- JAX --------------------------------------------------------------------------------------------

def jax_gpu() -> tuple[Any, Any, Any, str]:
    """(jax, jax.numpy, the first GPU device, its name), or DeviceUnavailable saying why not."""
    jax, jnp = peers.import_jax()
    try:
        device = jax.devices("gpu")[0]
    except RuntimeError as exc:
        raise DeviceUnavailable(f"JAX has no GPU backend (jax {jax.__version__}: "
                                f"{_first_line(exc)})") from None
    return jax, jnp, device, f"{device.device_kind} (JAX {device.platform})"
