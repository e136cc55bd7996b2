"""The host side of a CUDA program: run the steps, launch the kernels, move the data.

``CudaRunner`` walks a KernelProgram's steps in order. Loops launch the
kernels of tracejit/cuda/render.py; the shapes, the broadcast check and the
aligned operand strides are computed here, at run time, exactly as the C
backend's entry point does (``tj_broadcast``/``tj_align``). Views and
shape vectors need no kernel; nor do reshapes and basic indexing, which
are views too (tracejit/cuda/views.py). Softmax rows and basic
IncSubtensor and integer-array gathers and scatter-adds have their own
kernels (tracejit/cuda/rows.py, strided_writes.py, gather.py), and conv2d
is a patch gather and a gemm (conv.py), argmax/argmin row kernels
(argbest.py). Other nodes without a device kernel (``PythonCall`` and
``OpKernel`` steps: other advanced indexing, integer products...)
make a host round trip: their inputs are copied to the host, the node's
NumPy reference runs, its outputs are copied back. That is correct but
slow; it is what ``reference_nodes`` lists. Values computed on the host
(shape vectors, small constants, round-trip results) keep a host copy for
the rest of the call, so chains of small shape computations copy nothing
back.

The runner speaks to a ``Device`` (memory, copies, launches). Two exist:
``tracejit.cuda.runtime.NumbaDevice`` (a real GPU through numba's driver
bindings) and ``tracejit.cuda.shim.EmulatedDevice`` (host memory, kernels
run by the host shim), so everything here is tested without a GPU.

Matrix products (float32/float64 ``matmul``/``tensordot``) run on the
device through ``Device.gemm`` (tracejit/cuda/gemm.py decides the operand
layouts) when the device has one; without it (no cuBLAS) they keep the
host round trip and ``round_trip_notes`` says why.

Inputs may be NumPy values (copied in; outputs come back as ndarrays) or
objects with ``__cuda_array_interface__`` (used in place; outputs then
stay on the device, as the device's array objects).

Shared variables stay in device memory between calls: ``run_with_shared``
(what ``tj.function`` calls instead of ``__call__`` for this runner) reads
each one's device copy, uploading it only when it has none (first call,
after ``set_value``), and keeps the updates' results on the device; the
host copy is refreshed only when read (tracejit/runtime/shared.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import numpy as np

from tracejit.codegen.kernel_ir import (
    Buffer, DimShuffleView, ElementwiseLoop, ErrorSite, KernelProgram, PythonCall, ReduceLoop,
    Release, ShapeVector)
from tracejit.cuda.gemm import DeviceProducts, GemmCall, gemm_steps
from tracejit.cuda.argbest import DeviceArgs, arg_steps
from tracejit.cuda.conv import DeviceConvolutions, conv_steps
from tracejit.cuda.gather import DeviceGathers, gather_steps
from tracejit.cuda.strided_writes import (
    DeviceStridedWrites, alloc_steps, inc_subtensor_steps, join_steps)
from tracejit.cuda.interface import is_device_array, read_layout
from tracejit.cuda.render import CudaModule, ElementwiseLaunch, KernelSpec, ReduceLaunch
from tracejit.cuda.rows import DeviceRows, softmax_steps
from tracejit.cuda.views import DeviceViews, view_steps


@dataclass
class DeviceArray:
    """A strided array in device memory (byte strides; ``owner`` keeps the memory alive)."""

    ptr: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]
    dtype: np.dtype
    owner: Any

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def cuda_array_interface(self) -> dict:
        return {"shape": self.shape, "strides": self.strides, "typestr": self.dtype.str,
                "data": (self.ptr, False), "version": 3}


class LoadedKernels(Protocol):
    def launch(self, spec: KernelSpec, grid: int, block: int, args: Sequence[int]) -> None: ...


class Device(Protocol):
    block_size: int        # threads per block
    max_blocks: int        # blocks per launch (grid-stride loops cover the rest)
    reduce_blocks: int     # aim for about this many blocks in a reduction

    def load(self, module: CudaModule) -> LoadedKernels: ...
    def alloc(self, nbytes: int) -> tuple[int, Any]: ...
    def upload(self, host: np.ndarray) -> tuple[int, Any]: ...
    def download(self, ptr: int, nbytes: int, owner: Any) -> np.ndarray: ...
    def zero(self, ptr: int, nbytes: int) -> None: ...
    def synchronize(self) -> None: ...
    def export(self, array: DeviceArray) -> Any: ...
    # Matrix products: ``gemm_unavailable()`` is None when ``gemm`` works, else why not.
    def gemm_unavailable(self) -> str | None: ...
    def gemm(self, call: GemmCall) -> None: ...


def contiguous_strides(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    strides, step = [], itemsize
    for length in reversed(shape):
        strides.append(step)
        step *= max(length, 1)
    return tuple(reversed(strides))


def array_to_host(device: Device, array: DeviceArray) -> np.ndarray:
    """A fresh C-contiguous ndarray with the values of ``array`` (any strides)."""
    if array.size == 0:
        return np.empty(array.shape, array.dtype)
    low = sum(min(0, (n - 1) * s) for n, s in zip(array.shape, array.strides))
    high = sum(max(0, (n - 1) * s) for n, s in zip(array.shape, array.strides))
    raw = device.download(array.ptr + low, high - low + array.dtype.itemsize, array.owner)
    view = np.ndarray(array.shape, array.dtype, buffer=raw, offset=-low, strides=array.strides)
    return np.array(view, order="C", copy=True)


def _shape_text(shape: Sequence[int]) -> str:
    return str(tuple(shape))


class KernelLaunchError(RuntimeError):
    """A kernel could not be launched or failed on the device."""


class CudaRunner:
    """A function graph compiled for a device: call it with the list of input values."""

    def __init__(self, fgraph, program: KernelProgram, module: CudaModule, device: Device) -> None:
        from tracejit.codegen.entry import ReferenceCallback

        self.fgraph = fgraph
        self.program = program
        self.module = module
        self.device = device
        self.kernels = device.load(module)
        self.callbacks = [ReferenceCallback(node) for node in program.python_nodes]
        host_constants = {buffer.index: np.asarray(value, dtype=buffer.dtype)
                          for buffer, value in program.constants}
        self.constants = {index: self._upload(value) for index, value in host_constants.items()}
        # Small constants (shape entries, -1 in a reshape) are read on the host without a copy.
        self.host_constants = {index: value for index, value in host_constants.items()
                               if value.size <= 64}
        # The nodes with device code besides loops: matrix products through the device's
        # gemm (where it has one), the others through kernels of their own.
        self.products = DeviceProducts(self, module.pack)
        self.rows = DeviceRows(self, self.products, module.softmax)
        self.views = DeviceViews(self, self.products)
        self.updates = DeviceStridedWrites(self, module.update)
        self.gathers = DeviceGathers(self, module.gather)
        self.convolutions = DeviceConvolutions(self, self.products, module.im2col)
        self.args = DeviceArgs(self, self.products, module.arg)
        # Step kind -> the object computing it; each has run(kind, step, node, values,
        # host_copies, flag, launched) -> bool.
        self.step_families = {
            "matmul": self.products, "tensordot": self.products, "softmax": self.rows,
            "reshape": self.views, "subtensor": self.views, "inc_subtensor": self.updates,
            "alloc": self.updates, "join": self.updates, "gather": self.gathers,
            "scatter_add": self.gathers, "conv2d": self.convolutions, "argmax": self.args,
            "argmin": self.args}
        self.device_steps: dict[int, str] = {**softmax_steps(program), **view_steps(program),
                                             **inc_subtensor_steps(program),
                                             **alloc_steps(program), **join_steps(program),
                                             **gather_steps(program), **arg_steps(program)}
        self.round_trip_notes: list[str] = []
        candidates = {**gemm_steps(program), **conv_steps(program)}
        if candidates:
            unavailable = getattr(device, "gemm_unavailable", lambda: "the device has no gemm")()
            if unavailable is None:
                self.device_steps.update(candidates)
            else:
                ops = ", ".join(dict.fromkeys(program.steps[n].site.op for n in candidates))
                self.round_trip_notes.append(f"{ops}: host round trip, because {unavailable}")

    @property
    def source(self) -> str:
        return self.module.source

    @property
    def reference_nodes(self) -> list:
        """The nodes without a device kernel or device gemm: each makes a host round trip
        (``round_trip_notes`` says why for matrix products)."""
        on_device = {self.program.steps[n].callback for n in self.device_steps}
        return [node for i, node in enumerate(self.program.python_nodes) if i not in on_device]

    def __repr__(self) -> str:
        return (f"<CudaRunner: {len(self.module.kernels)} kernels, {len(self.device_steps)} "
                f"device gemm/softmax steps, {len(self.reference_nodes)} host round trips>")

    # -- memory ------------------------------------------------------------------------------
    def _upload(self, host: np.ndarray) -> DeviceArray:
        host = np.asarray(host)
        if not host.flags.c_contiguous:
            host = host.copy(order="C")  # (np.ascontiguousarray would make 0-d arrays 1-d)
        if not host.dtype.isnative:
            host = host.astype(host.dtype.newbyteorder("="))
        ptr, owner = self.device.upload(host)
        return DeviceArray(ptr, host.shape, contiguous_strides(host.shape, host.itemsize),
                           host.dtype, owner)

    def _empty(self, shape: Sequence[int], dtype: str) -> DeviceArray:
        dtype = np.dtype(dtype)
        shape = tuple(int(n) for n in shape)
        ptr, owner = self.device.alloc(max(math.prod(shape), 1) * dtype.itemsize)
        return DeviceArray(ptr, shape, contiguous_strides(shape, dtype.itemsize), dtype, owner)

    def to_host(self, array: DeviceArray) -> np.ndarray:
        """A fresh C-contiguous ndarray with the values of ``array`` (any strides)."""
        return array_to_host(self.device, array)

    # DEBUG_MODE and profiling check and time host values; tj.function stages a
    # call with device-array arguments through these (tracejit/runtime/function.py).
    def copy_to_host(self, value: Any) -> np.ndarray:
        """A host copy of an object with ``__cuda_array_interface__``."""
        return self.to_host(from_cuda_array_interface(value))

    def copy_to_device(self, host: np.ndarray) -> Any:
        """``host`` in fresh device memory, as the device's array object."""
        return self.device.export(self._upload(host))

    # -- a call --------------------------------------------------------------------------------
    def __call__(self, input_values: Sequence[Any]) -> list:
        program = self.program
        if len(input_values) != len(program.inputs):
            raise TypeError(f"expected {len(program.inputs)} inputs, got {len(input_values)}")
        on_device = any(is_device_array(v) for v in input_values)
        inputs = [self._input(buffer, value, position) for position, (buffer, value)
                  in enumerate(zip(program.inputs, input_values))]
        return self._results(self._execute(inputs), program.outputs, on_device, inputs)

    # tj.function calls run_with_shared instead of __call__ (tracejit/runtime/function.py).
    keeps_shared_on_device = True

    def run_with_shared(self, arrays: Sequence[Any], shared: Sequence[Any],
                        update_targets: Sequence[Any]) -> list:
        """One call of a function whose last inputs are the shared variables ``shared``
        and whose last outputs are the new values of ``update_targets``.

        Shared values are read from device memory (uploaded only when the
        variable has no copy on this device) and the updates stay there; they
        are applied only once every output is computed, so a call that raises
        changes nothing. Returns the other outputs.
        """
        from tracejit.runtime.shared import device_value, keep_on_device
        program = self.program
        explicit = len(arrays)
        if explicit + len(shared) != len(program.inputs):
            raise TypeError(f"expected {len(program.inputs)} inputs, got "
                            f"{explicit} and {len(shared)} shared variables")
        on_device = any(is_device_array(v) for v in arrays)
        inputs = [self._input(buffer, value, position) for position, (buffer, value)
                  in enumerate(zip(program.inputs, arrays))]
        for position, (variable, buffer) in enumerate(zip(shared, program.inputs[explicit:])):
            array = device_value(variable, self.device)
            if array is None:
                array = self._input(buffer, variable.container[0], explicit + position)
                keep_on_device(variable, self.device, array, None, host_is_current=True)
            inputs.append(array)
        results = self._execute(inputs)
        n_outputs = len(results) - len(update_targets)
        new_values = results[n_outputs:]
        user_owners = {id(value) for value in arrays if is_device_array(value)}
        for number, array in enumerate(new_values):
            if id(array.owner) in user_owners:
                new_values[number] = self._copy(array)  # never keep the caller's memory
        outputs = self._results(results[:n_outputs], program.outputs[:n_outputs], on_device,
                                inputs, keep_apart=new_values)
        device = self.device
        for target, array in zip(update_targets, new_values):
            keep_on_device(target, device, array, _downloader(device, array),
                           host_is_current=False)
        return outputs

    def _execute(self, inputs: Sequence[DeviceArray]) -> list[DeviceArray]:
        """Run every step on device arrays; the outputs' device arrays (synchronized)."""
        program = self.program
        values: dict[int, DeviceArray] = dict(self.constants)
        for buffer, array in zip(program.inputs, inputs):
            values[buffer.index] = array
        flag = self._empty((1,), "int32")
        launched: list[ErrorSite] = []
        # Values computed on the host (shape vectors, round-trip results), by buffer index:
        # a later round trip or reshape reads them here instead of downloading them.
        host_copies: dict[int, np.ndarray] = dict(self.host_constants)
        for number, step in enumerate(program.steps):
            if isinstance(step, ElementwiseLoop):
                self._elementwise(self.module.launches[number], values, flag, launched)
            elif isinstance(step, ReduceLoop):
                self._reduce(self.module.launches[number], values, flag, launched)
            elif isinstance(step, DimShuffleView):
                values[step.output.index] = _view(step, values[step.source.index])
            elif isinstance(step, ShapeVector):
                shape = np.array(values[step.source.index].shape, dtype=np.int64)
                host_copies[step.output.index] = shape
                values[step.output.index] = self._upload(shape)
            elif isinstance(step, PythonCall):
                family = self.step_families.get(self.device_steps.get(number))
                node = program.python_nodes[step.callback]
                # A family declines (False) what its reference must do: raise NumPy's
                # error for a bad index or shape, or compute a case it has no kernel for.
                if family is None or not family.run(self.device_steps[number], step, node, values,
                                                    host_copies, flag, launched):
                    self._host_round_trip(step, values, host_copies)
            elif isinstance(step, Release):
                values.pop(step.buffer.index, None)
                host_copies.pop(step.buffer.index, None)
        self._synchronize(launched)
        return [values[buffer.index] for buffer in program.outputs]

    def _results(self, arrays: Sequence[DeviceArray], buffers: Sequence[Buffer],
                 on_device: bool, inputs: Sequence[DeviceArray],
                 keep_apart: Sequence[DeviceArray] = ()) -> list:
        """Host copies of the outputs, or (``on_device``) device objects that share no
        memory with an input, a constant, another output or a ``keep_apart`` array.

        Views (dimshuffles, reshapes) keep the memory's ``owner``: sharing an owner
        is what makes a result a view of something that must stay apart."""
        if not on_device:
            return [self.to_host(array) for array in arrays]
        taken = {id(a.owner) for a in [*inputs, *self.constants.values(), *keep_apart]}
        results: list[DeviceArray] = []
        for buffer, array in zip(buffers, arrays):
            if buffer.origin in ("input", "constant") or id(array.owner) in taken:
                array = self._copy(array)
            taken.add(id(array.owner))
            results.append(array)
        return [self.device.export(r) for r in results]

    def _copy(self, array: DeviceArray) -> DeviceArray:
        """A fresh contiguous copy (through the host: only for rare aliasing cases)."""
        return self._upload(self.to_host(array))

    def _synchronize(self, launched: list[ErrorSite]) -> None:
        try:
            self.device.synchronize()
        except Exception as exc:
            ops = ", ".join(dict.fromkeys(site.op for site in launched)) or "none"
            where = launched[-1].where if launched else ""
            raise KernelLaunchError(f"a CUDA kernel failed ({exc}); the kernels since the last "
                                    f"check computed: {ops}{where}") from exc
        launched.clear()

    def _input(self, buffer: Buffer, value: Any, position: int) -> DeviceArray:
        if is_device_array(value):
            array = from_cuda_array_interface(value)
            if array.dtype != np.dtype(buffer.dtype) or len(array.shape) != buffer.ndim:
                raise TypeError(f"input {position}: expected a {buffer.ndim}-d {buffer.dtype} "
                                f"device array, got a {len(array.shape)}-d {array.dtype} one "
                                f"(device arrays are not converted; cast it first)")
            return array
        host = np.asarray(value)
        if host.ndim != buffer.ndim:
            raise TypeError(f"input {position}: expected {buffer.ndim} dimensions, got {host.ndim}")
        if host.dtype != np.dtype(buffer.dtype):
            host = host.astype(buffer.dtype, casting="safe")
        return self._upload(host)

    # -- loops -----------------------------------------------------------------------------------
    def _broadcast(self, nd: int, operands: Sequence[DeviceArray], buffers: Sequence[Buffer],
                   site: ErrorSite) -> tuple[list[int], list[list[int]]]:
        """The loop shape and each operand's byte strides aligned to it (0 where broadcast)."""
        shape = [1] * nd
        for array in operands:
            offset = nd - len(array.shape)
            for d, length in enumerate(array.shape):
                if length == 1:
                    continue
                if shape[offset + d] == 1:
                    shape[offset + d] = length
                elif shape[offset + d] != length:
                    shapes = " and ".join(_shape_text(a.shape) for a in operands)
                    raise ValueError(f"{site.op}: operands could not be broadcast together "
                                     f"with shapes {shapes}{site.where}")
        aligned = []
        for array in operands:
            offset = nd - len(array.shape)
            strides = [0] * nd
            for d, (length, stride) in enumerate(zip(array.shape, array.strides)):
                strides[offset + d] = 0 if length == 1 else stride
            aligned.append(strides)
        return shape, aligned

    def _launch(self, spec: KernelSpec, grid: int, block: int, args: dict[str, int],
                site: ErrorSite, launched: list[ErrorSite]) -> None:
        ordered = [args[name] for _, name in spec.params]
        try:
            self.kernels.launch(spec, grid, block, ordered)
        except Exception as exc:
            raise KernelLaunchError(f"{site.op}: launching CUDA kernel {spec.name} "
                                    f"(grid {grid}, block {block}) failed: {exc}{site.where}") from exc
        launched.append(site)

    def _check_flag(self, flag: DeviceArray, site: ErrorSite, launched: list[ErrorSite]) -> None:
        self._synchronize(launched)
        if self.to_host(flag)[0]:
            raise ValueError(f"{site.op}: Integers to negative integer powers are not allowed."
                             f"{site.where}")

    def _elementwise(self, launch: ElementwiseLaunch, values, flag, launched) -> None:
        loop = launch.loop
        operands = [values[b.index] for b in loop.operands]
        shape, strides = self._broadcast(loop.ndim, operands, loop.operands, loop.site)
        outputs = [self._empty(shape, b.dtype) for b in loop.outputs]
        for buffer, array in zip(loop.outputs, outputs):
            values[buffer.index] = array
        n = math.prod(shape)
        if n == 0:
            return
        flat = all(scalar or (list(a.shape) == shape and
                              tuple(a.strides) == contiguous_strides(shape, a.dtype.itemsize))
                   for a, scalar in zip(operands, loop.scalar_operands))
        args = {"n": n, "flat": int(flat), "bad": flag.ptr}
        args.update({f"shape{d}": length for d, length in enumerate(shape)})
        args.update({f"out{k}": array.ptr for k, array in enumerate(outputs)})
        for k, (array, aligned) in enumerate(zip(operands, strides)):
            args[f"in{k}"] = array.ptr
            args.update({f"in{k}_st{d}": s for d, s in enumerate(aligned)})
        if loop.raises:
            self.device.zero(flag.ptr, 4)
        block = self.device.block_size
        grid = max(1, min(-(-n // block), self.device.max_blocks))
        self._launch(launch.kernel, grid, block, args, loop.site, launched)
        if loop.raises:
            self._check_flag(flag, loop.site, launched)

    def _reduce(self, launch: ReduceLaunch, values, flag, launched) -> None:
        loop = launch.loop
        nd = loop.input_ndim
        operands = [values[b.index] for b in loop.operands]
        shape, strides = self._broadcast(nd, operands, loop.operands, loop.site)
        kept = [shape[d] for d in range(nd) if d not in loop.axes]
        n_out = math.prod(kept)
        n_reduced = math.prod(shape[d] for d in loop.axes)
        if loop.kind in ("max", "min") and n_reduced == 0 and n_out > 0:
            name = "maximum" if loop.kind == "max" else "minimum"
            raise ValueError(f"{loop.site.op}: zero-size array to reduction operation {name} "
                             f"which has no identity{loop.site.where}")
        out = self._empty(kept, loop.output.dtype)
        values[loop.output.index] = out
        if n_out == 0:
            return
        device = self.device
        # A block per output: short reductions (a sum over a length-1 axis only known at
        # run time) take one warp per block rather than idling a full block.
        block = min(device.block_size, max(32, 1 << max(n_reduced - 1, 0).bit_length()))
        chunks = 1
        if n_out < device.reduce_blocks and n_reduced > block:
            chunks = max(1, min(-(-n_reduced // block), device.reduce_blocks // n_out))
        partial = self._empty((n_out * chunks,), loop.accumulator_dtype) if chunks > 1 else out
        args = {"n_out": n_out, "n_reduced": n_reduced, "chunks": chunks, "bad": flag.ptr,
                "out": out.ptr, "partial": partial.ptr}
        args.update({f"shape{d}": length for d, length in enumerate(shape)})
        for k, (array, aligned) in enumerate(zip(operands, strides)):
            args[f"in{k}"] = array.ptr
            args.update({f"in{k}_st{d}": s for d, s in enumerate(aligned)})
        if loop.raises:
            device.zero(flag.ptr, 4)
        grid = max(1, min(n_out * chunks, device.max_blocks))
        self._launch(launch.kernel, grid, block, args, loop.site, launched)
        if chunks > 1:
            combine_args = {"n_out": n_out, "chunks": chunks, "out": out.ptr,
                            "partial": partial.ptr}
            self._launch(launch.combine, max(1, min(n_out, device.max_blocks)), block,
                         combine_args, loop.site, launched)
        if loop.raises:
            self._check_flag(flag, loop.site, launched)
        if chunks > 1:
            self._synchronize(launched)  # the partial buffer is freed on return

    # -- host round trips --------------------------------------------------------------------------
    def _host_round_trip(self, step: PythonCall, values: dict[int, DeviceArray],
                         host_copies: dict[int, np.ndarray]) -> None:
        """Copy the inputs to the host (unless ``host_copies`` has them), run the node's
        reference, copy the results back (keeping them in ``host_copies``)."""
        hosts = [host_copies[b.index] if b.index in host_copies else self.to_host(values[b.index])
                 for b in step.inputs]
        results = self.callbacks[step.callback](*hosts)
        for buffer, result in zip(step.outputs, results):
            result = np.asarray(result)
            if result.dtype != np.dtype(buffer.dtype) or result.ndim != buffer.ndim:
                raise TypeError(f"{step.site.op}: the reference returned a {result.ndim}-d "
                                f"{result.dtype} array where a {buffer.ndim}-d {buffer.dtype} "
                                f"one was expected{step.site.where}")
            host_copies[buffer.index] = result
            values[buffer.index] = self._upload(result)


def _downloader(device: Device, array: DeviceArray):
    return lambda: array_to_host(device, array)


def _view(step: DimShuffleView, source: DeviceArray) -> DeviceArray:
    for d in step.dropped:
        if source.shape[d] != 1:
            raise ValueError(f"{step.site.op}: cannot drop dimension {d} of length "
                             f"{source.shape[d]} (input shape {_shape_text(source.shape)})"
                             f"{step.site.where}")
    shape, strides = [], []
    for origin in step.new_order:
        if origin == "x":
            shape.append(1)
            strides.append(0)
        else:
            shape.append(source.shape[origin])
            strides.append(source.strides[origin])
    return DeviceArray(source.ptr, tuple(shape), tuple(strides), source.dtype, source.owner)


def from_cuda_array_interface(value: Any) -> DeviceArray:
    """The DeviceArray describing an object with ``__cuda_array_interface__`` (kept alive)."""
    layout = read_layout(value)
    strides = contiguous_strides(layout.shape, layout.dtype.itemsize) if layout.strides is None \
        else layout.strides
    return DeviceArray(layout.ptr, layout.shape, strides, layout.dtype, value)
