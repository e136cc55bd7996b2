"""The generated CUDA source of every elementwise row and every reduction kind compiles with nvcc.

nvcc is slow to start and slower to generate code, so the kernels of all
graphs go into one translation unit (distinct kernel-name prefixes) and:

- every dtype's kernels (about 1,500) go through nvcc's device front end
  (``-fdevice-syntax-only``: types, overloads, host/device rules), and
- the float32 and float64 kernels (the dtypes device="cuda" promises) are
  compiled all the way to PTX.

Warnings are errors in both.
"""

from __future__ import annotations

import shutil
import subprocess

import pytest

from tracejit.codegen.lower import lower_graph
from tracejit.cuda.argbest import arg_steps
from tracejit.cuda.conv import conv_steps
from tracejit.cuda.gather import gather_steps
from tracejit.cuda.render import cuda_source, render_cuda
from tracejit.cuda.rows import softmax_steps
from tracejit.cuda.strided_writes import alloc_steps, inc_subtensor_steps
from tracejit.cuda.views import view_steps

from cuda_graphs import (DTYPES, arg_graph, conv_graph, elementwise_graph, gather_graph,
                         inc_subtensor_graph, reduction_graph, softmax_graph)

NVCC = shutil.which("nvcc")
NVCC_FLAGS = ["-arch=sm_90", "-std=c++17", "-Werror", "all-warnings"]


def _modules(dtypes):
    modules = []
    for dtype in dtypes:
        fgraph, _ = elementwise_graph(dtype)
        modules.append(render_cuda(lower_graph(fgraph), prefix=f"elementwise_{dtype}"))
        fgraph, _ = reduction_graph(dtype)
        modules.append(render_cuda(lower_graph(fgraph), prefix=f"reduce_{dtype}"))
        modules.append(render_cuda(lower_graph(inc_subtensor_graph(dtype)),
                                   prefix=f"inc_subtensor_{dtype}"))
        modules.append(render_cuda(lower_graph(gather_graph(dtype)), prefix=f"gather_{dtype}"))
        modules.append(render_cuda(lower_graph(arg_graph(dtype)), prefix=f"arg_{dtype}"))
        if dtype in ("float32", "float64"):
            modules.append(render_cuda(lower_graph(softmax_graph(dtype)),
                                       prefix=f"softmax_{dtype}"))
            modules.append(render_cuda(lower_graph(conv_graph(dtype)), prefix=f"conv_{dtype}"))
    return modules


def _on_device(program) -> set[int]:
    """The reference nodes that run as device kernels of their own, not round trips."""
    steps = {**softmax_steps(program), **inc_subtensor_steps(program), **view_steps(program),
             **gather_steps(program), **alloc_steps(program), **conv_steps(program),
             **arg_steps(program)}
    return {program.steps[n].callback for n in steps}


def _nvcc(tmp_path, modules, *flags):
    path = tmp_path / "kernels.cu"
    path.write_text(cuda_source([module.kernels_source for module in modules]))
    command = [NVCC, *flags, *NVCC_FLAGS, str(path), "-o", str(tmp_path / "kernels.out")]
    return subprocess.run(command, capture_output=True, text=True, timeout=300)


def test_every_row_and_reduction_is_rendered_as_a_kernel():
    modules = _modules(DTYPES)
    for module in modules:
        loops = (len(module.launches) + len(module.softmax) + len(module.update) +
                 len(module.gather) + len(module.im2col) + len(module.arg))
        assert loops and len(module.kernels) >= loops
        # Nothing of these graphs runs through a host round trip (float16 aside).
        python_nodes = [n for i, n in enumerate(module.program.python_nodes)
                        if n.outputs[0].type.dtype != "float16" and
                        i not in _on_device(module.program)]
        assert not python_nodes, python_nodes
    names = [spec.name for module in modules for spec in module.kernels]
    assert len(names) == len(set(names))


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_every_dtype_passes_the_device_front_end(tmp_path):
    result = _nvcc(tmp_path, _modules(DTYPES), "--ptx", "-fdevice-syntax-only")
    assert result.returncode == 0, result.stderr[-8000:]


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_float_kernels_compile_to_ptx(tmp_path):
    result = _nvcc(tmp_path, _modules(["float32", "float64"]), "--ptx")
    assert result.returncode == 0, result.stderr[-8000:]
    ptx = (tmp_path / "kernels.out").read_text()
    assert ".visible .entry elementwise_float64_" in ptx
    assert "shfl.sync.down" in ptx  # the block reductions use warp shuffles
    assert ".visible .entry softmax_float32_softmax_float32" in ptx
    assert ".visible .entry inc_subtensor_float64_update_float64" in ptx
    assert ".visible .entry gather_float64_scatter_float64" in ptx
    assert ".visible .entry conv_float32_im2col_float32" in ptx
    assert ".visible .entry arg_float64_argmax_float64" in ptx


@pytest.mark.skipif(NVCC is None, reason="nvcc is not installed")
def test_a_broken_kernel_is_caught_by_the_front_end_check(tmp_path):
    """The syntax-only check does reject bad code (an ambiguous helper call)."""
    module = _modules(["float64"])[0]
    broken = type(module)(module.program, module.kernels_source +
                          '\nextern "C" __global__ void broken(int8_t *x) { x[0] = tj_sigmoid(x[1]); }',
                          module.kernels, module.launches)
    result = _nvcc(tmp_path, [broken], "--ptx", "-fdevice-syntax-only")
    assert result.returncode != 0 and "tj_sigmoid" in result.stderr
