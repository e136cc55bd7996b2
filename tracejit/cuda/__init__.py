"""The CUDA backend (device="cuda"): a second renderer of the kernel IR, plus the device side.

- prelude.py: the C backend's NumPy-semantics helpers as ``__host__ __device__``
  C++, and the warp/block reductions;
- render.py: ElementwiseLoop/ReduceLoop -> ``__global__`` kernels + launch specs;
- executor.py: the host-side plan (shapes, broadcasting, views, launches, host
  round trips for nodes without a device kernel), over a ``Device``;
- runtime.py: the real device through numba (detection, nvcc/NVRTC + disk
  cache, memory, launches) -- untested on a GPU, see its docstring;
- shim.py: the same kernels compiled by g++ and run on an emulated grid,
  which is how they are tested without a GPU.
"""

from __future__ import annotations


def cuda_runner(fgraph, mode, device=None):
    """Compile ``fgraph`` (already rewritten) for a CUDA device.

    ``device`` defaults to the current GPU; without one this raises
    ``CudaUnavailableError`` (a RuntimeError) before anything else is done.
    Tests pass ``tracejit.cuda.shim.EmulatedDevice()`` to run on the CPU.
    """
    from tracejit.codegen.lower import lower_graph
    from tracejit.cuda.executor import CudaRunner
    from tracejit.cuda.render import render_cuda

    if device is None:
        from tracejit.cuda.runtime import default_device
        device = default_device()
    program = lower_graph(fgraph)
    return CudaRunner(fgraph, program, render_cuda(program), device)
