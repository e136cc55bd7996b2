"""The numba backend: the C backend's kernel program, compiled by numba instead.

FAST_RUN uses it where no C compiler works (a Windows machine without
one, a container without gcc): the graph is lowered exactly as for C
(tracejit/codegen/lower.py), printed as Python loops
(tracejit/codegen/numba_render.py) and compiled with ``numba.njit``. The
steps run from Python, one kernel call per loop, so small graphs pay a few
microseconds per step that the C backend's single entry point does not;
large arrays run at compiled speed.

Why it is built this way:

- Every check happens in Python before a kernel runs (broadcasting,
  dropped dimensions, empty reductions), with the C backend's messages,
  naming the op and the user's line: the kernels are compiled without
  bounds checks and must only ever see arrays they can walk.
- Each loop variant is compiled for one explicit signature (arrays of any
  layout, inputs read-only), so C-contiguous, transposed and broadcast
  arguments share one machine-code version instead of one per layout.
- numba's disk cache keys a function by its source file. The generated
  source is written once to ``<cache_dir>/numba/<sha256>.py`` (atomically,
  never rewritten while its content is right), so a second process finds
  numba's cached machine code next to it.
- Compiled kernels are also kept per process by source hash, so the same
  graph compiled twice (or two graphs printing the same text) compiles once.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import threading
from types import ModuleType
from typing import Any, Callable, Sequence

import numpy as np

from tracejit.codegen.entry import ReferenceCallback, _native
from tracejit.codegen.kernel_ir import (
    Buffer, DimShuffleView, ElementwiseLoop, ErrorSite, KernelProgram, PythonCall, ReduceLoop,
    Release, ShapeVector)
from tracejit.codegen.numba_render import has_flat_variant, kernel_name, render_numba_module


class BackendFallbackWarning(RuntimeWarning):
    """FAST_RUN could not use the C backend and runs on the numba backend instead."""


class NumbaUnavailableError(ImportError):
    """numba is not installed (or does not import): the numba backend cannot run."""


def numba_available() -> bool:
    """Whether numba imports (it is an optional dependency)."""
    try:
        import numba  # noqa: F401
    except Exception:  # a broken install raises more than ImportError
        return False
    return True


def _numba():
    try:
        import numba
    except Exception as exc:
        raise NumbaUnavailableError(
            "the numba backend needs numba (`pip install numba`); without it and without a "
            f"C compiler, use mode='FAST_COMPILE' ({exc})") from exc
    return numba


# -- loading generated source ------------------------------------------------------------------

class LoadedKernels:
    """One generated module and the kernels compiled from it so far (by name)."""

    def __init__(self, module: ModuleType) -> None:
        self.module = module
        self.compiled: dict[str, Any] = {}
        self.lock = threading.Lock()

    def kernel(self, name: str, signature) -> Callable:
        compiled = self.compiled.get(name)
        if compiled is None:
            with self.lock:
                compiled = self.compiled.get(name)
                if compiled is None:
                    numba = _numba()
                    compiled = numba.njit(signature, cache=True, error_model="numpy",
                                          nogil=True)(getattr(self.module, name))
                    self.compiled[name] = compiled
        return compiled


_loaded: dict[str, LoadedKernels] = {}
_loaded_lock = threading.Lock()


def source_directory() -> str:
    """``<config.cache_dir>/numba``, created private (see tracejit.codegen.cache)."""
    from tracejit.codegen.cache import ensure_cache_dir
    from tracejit.config import config
    return ensure_cache_dir(os.path.join(config.cache_dir, "numba"))


def load_source(source: str) -> LoadedKernels:
    """The module holding ``source``, written under the cache directory and imported."""
    from tracejit.codegen.cache import sha256_hex
    digest = sha256_hex(source.encode("utf-8"))[:40]
    directory = source_directory()
    key = os.path.join(directory, digest)
    with _loaded_lock:
        loaded = _loaded.get(key)
        if loaded is not None:
            return loaded
        path = os.path.join(directory, f"tj_{digest}.py")
        _write_once(path, source)
        module_name = f"tracejit_numba_{digest}"
        spec = importlib.util.spec_from_file_location(module_name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
        loaded = _loaded[key] = LoadedKernels(module)
        return loaded


def _write_once(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically unless it already holds exactly that.

    Rewriting an unchanged file would change its mtime, which numba's cache
    index checks: every process would then recompile.
    """
    data = text.encode("utf-8")
    try:
        with open(path, "rb") as handle:
            if handle.read() == data:
                return
    except FileNotFoundError:
        pass
    descriptor, staging = tempfile.mkstemp(dir=os.path.dirname(path), suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
        os.replace(staging, path)
    except BaseException:
        try:
            os.unlink(staging)
        except OSError:
            pass
        raise


# -- signatures --------------------------------------------------------------------------------

def _array_type(dtype: str, ndim: int, layout: str, readonly: bool):
    numba = _numba()
    return numba.types.Array(numba.from_dtype(np.dtype(dtype)), ndim, layout, readonly=readonly)


def _operand_types(operands: tuple[Buffer, ...], scalar: tuple[bool, ...], ndim: int,
                   layout: str) -> list:
    return [_array_type(b.dtype, 1, "A", True) if is_scalar
            else _array_type(b.dtype, ndim, layout, True)
            for b, is_scalar in zip(operands, scalar)]


def _elementwise_signature(loop: ElementwiseLoop, variant: str):
    numba = _numba()
    ndim, layout = (1, "C") if variant == "flat" else (max(loop.ndim, 1), "A")
    args = [_array_type(b.dtype, ndim, layout, False) for b in loop.outputs]
    args += _operand_types(loop.operands, loop.scalar_operands, ndim, layout)
    return numba.types.boolean(*args)


def _reduce_signature(loop: ReduceLoop, variant: str):
    numba = _numba()
    kept = loop.input_ndim - len(loop.axes)
    ndim, layout = (1, "C") if variant == "flat" else (max(loop.input_ndim, 1), "A")
    args = [_array_type("int64", 1, "C", True),
            _array_type(loop.output.dtype, max(kept, 1), "A", False)]
    args += _operand_types(loop.operands, loop.scalar_operands, ndim, layout)
    return numba.types.boolean(*args)


# -- run-time checks ---------------------------------------------------------------------------

def _broadcast(arrays: list[np.ndarray], ndim: int, site: ErrorSite) -> tuple[int, ...]:
    try:
        shape = np.broadcast_shapes(*[a.shape for a in arrays]) if arrays else ()
    except ValueError:
        shapes = " and ".join(str(a.shape) for a in arrays)
        raise ValueError(f"{site.op}: operands could not be broadcast together with shapes "
                         f"{shapes}{site.where}") from None
    return (1,) * (ndim - len(shape)) + tuple(shape)


def _size(shape: tuple[int, ...]) -> int:
    size = 1
    for length in shape:
        size *= length
    return size


def _scalar_operand(array: np.ndarray, site: ErrorSite) -> np.ndarray:
    if array.size != 1:
        raise ValueError(f"{site.op}: an operand of static shape {(1,) * array.ndim} has "
                         f"shape {array.shape}{site.where}")
    return array.reshape(1)


def _negative_power(site: ErrorSite) -> ValueError:
    return ValueError(f"{site.op}: Integers to negative integer powers are not allowed."
                      f"{site.where}")


# -- threads ---------------------------------------------------------------------------------

# Loops over more elements than this are split along their first axis and
# run on several threads (the kernels release the GIL), as the C backend's
# OpenMP loops are. Reductions stay on one thread.
PARALLEL_MIN = 131072
_pool = None
_pool_lock = threading.Lock()


def _thread_pool():
    global _pool
    if _pool is None:
        with _pool_lock:
            if _pool is None:
                from concurrent.futures import ThreadPoolExecutor
                _pool = ThreadPoolExecutor(max_workers=_thread_count(),
                                           thread_name_prefix="tracejit-numba")
    return _pool


def _thread_count() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def _call_split(kernel: Callable, args: list, split: list[bool], size: int) -> bool:
    """``kernel(*args)``, in pieces on threads when the loop is large.

    ``split`` marks the arguments that have the loop's first axis (the
    outputs and the full operands); the others (1-element scalar operands)
    go to every piece whole.
    """
    from tracejit.config import config
    length = args[0].shape[0]
    threads = min(_thread_count(), length)
    if size < PARALLEL_MIN or threads < 2 or not config.openmp:
        return kernel(*args)
    bounds = [length * k // threads for k in range(threads + 1)]
    pool = _thread_pool()
    futures = [pool.submit(kernel, *[a[lo:hi] if cut else a for a, cut in zip(args, split)])
               for lo, hi in zip(bounds[:-1], bounds[1:])]
    return any([future.result() for future in futures])


# -- steps -------------------------------------------------------------------------------------

Action = Callable[[list], None]


class _StepCompiler:
    """Turns each step of a program into a Python action over the buffer list."""

    def __init__(self, program: KernelProgram, kernels: LoadedKernels) -> None:
        self.program = program
        self.kernels = kernels

    def action(self, number: int, step) -> Action | None:
        if isinstance(step, ElementwiseLoop):
            return self.elementwise(number, step)
        if isinstance(step, ReduceLoop):
            return self.reduce(number, step)
        if isinstance(step, DimShuffleView):
            return self.view(step)
        if isinstance(step, PythonCall):
            return self.python_call(step)
        if isinstance(step, ShapeVector):
            source_index, out_index = step.source.index, step.output.index

            def shape_vector(buffers: list) -> None:
                buffers[out_index] = np.array(buffers[source_index].shape, dtype=np.int64)
            return shape_vector
        if isinstance(step, Release):
            index = step.buffer.index

            def release(buffers: list) -> None:
                buffers[index] = None
            return release
        raise TypeError(f"the numba backend cannot run {step!r}")

    def _lazy_kernel(self, number: int, variant: str, signature_of) -> Callable[[], Callable]:
        name = kernel_name(number, variant)
        kernels = self.kernels

        def get() -> Callable:
            return kernels.kernel(name, signature_of())
        return get

    def elementwise(self, number: int, loop: ElementwiseLoop) -> Action:
        ndim = loop.ndim
        operand_indices = [b.index for b in loop.operands]
        scalar = loop.scalar_operands
        outputs = [(b.index, np.dtype(b.dtype)) for b in loop.outputs]
        site = loop.site
        flat_kernel = self._lazy_kernel(number, "flat",
                                        lambda: _elementwise_signature(loop, "flat"))
        strided_kernel = self._lazy_kernel(number, "strided",
                                           lambda: _elementwise_signature(loop, "strided"))
        split = [True] * len(outputs) + [not is_scalar for is_scalar in scalar]

        def run(buffers: list) -> None:
            arrays = [buffers[i] for i in operand_indices]
            shape = _broadcast(arrays, ndim, site)
            results = [np.empty(shape, dtype) for _, dtype in outputs]
            for (index, _), result in zip(outputs, results):
                buffers[index] = result
            size = _size(shape)
            if size == 0:
                return
            if all(is_scalar or (a.size == size and a.flags.c_contiguous)
                   for a, is_scalar in zip(arrays, scalar)):
                args = [r.reshape(-1) for r in results]
                args += [_scalar_operand(a, site) if is_scalar else a.reshape(-1)
                         for a, is_scalar in zip(arrays, scalar)]
                kernel = flat_kernel()
            else:
                loop_shape = shape or (1,)
                args = [r.reshape(loop_shape) for r in results]
                args += [_scalar_operand(a, site) if is_scalar else np.broadcast_to(a, loop_shape)
                         for a, is_scalar in zip(arrays, scalar)]
                kernel = strided_kernel()
            if _call_split(kernel, args, split, size):
                raise _negative_power(site)
        return run

    def reduce(self, number: int, loop: ReduceLoop) -> Action:
        ndim = loop.input_ndim
        axes = loop.axes
        kept = [d for d in range(ndim) if d not in axes]
        operand_indices = [b.index for b in loop.operands]
        scalar = loop.scalar_operands
        out_index, out_dtype = loop.output.index, np.dtype(loop.output.dtype)
        site = loop.site
        empty_error = loop.kind in ("max", "min")
        name = "maximum" if loop.kind == "max" else "minimum"
        flat_kernel = (self._lazy_kernel(number, "flat", lambda: _reduce_signature(loop, "flat"))
                       if has_flat_variant(loop) else None)
        strided_kernel = self._lazy_kernel(number, "strided",
                                           lambda: _reduce_signature(loop, "strided"))

        def run(buffers: list) -> None:
            arrays = [buffers[i] for i in operand_indices]
            shape = _broadcast(arrays, ndim, site)
            kept_shape = tuple(shape[d] for d in kept)
            out = np.empty(kept_shape, out_dtype)
            buffers[out_index] = out
            if out.size == 0:
                return
            size = _size(shape)
            if empty_error and size == 0:
                raise ValueError(f"{site.op}: zero-size array to reduction operation {name} "
                                 f"which has no identity{site.where}")
            if flat_kernel is not None and all(
                    is_scalar or (a.size == size and a.flags.c_contiguous)
                    for a, is_scalar in zip(arrays, scalar)):
                args = [np.array([size], dtype=np.int64), out.reshape(1)]
                args += [_scalar_operand(a, site) if is_scalar else a.reshape(-1)
                         for a, is_scalar in zip(arrays, scalar)]
                bad = flat_kernel()(*args)
            else:
                loop_shape = shape or (1,)
                args = [np.array(loop_shape, dtype=np.int64), out.reshape(kept_shape or (1,))]
                args += [_scalar_operand(a, site) if is_scalar else np.broadcast_to(a, loop_shape)
                         for a, is_scalar in zip(arrays, scalar)]
                bad = strided_kernel()(*args)
            if bad:
                raise _negative_power(site)
        return run

    def view(self, view: DimShuffleView) -> Action:
        source_index, out_index = view.source.index, view.output.index
        kept = [o for o in view.new_order if o != "x"]
        permutation = tuple(kept) + tuple(view.dropped)
        # After the transpose: the kept axes in their new order, then the dropped ones
        # (length 1, removed by indexing with 0); None inserts the broadcastable axes.
        index = tuple(None if o == "x" else slice(None) for o in view.new_order) + \
            (0,) * len(view.dropped)
        dropped, site = view.dropped, view.site

        def run(buffers: list) -> None:
            source = buffers[source_index]
            for d in dropped:
                if source.shape[d] != 1:
                    raise ValueError(f"{site.op}: cannot drop dimension {d} of length "
                                     f"{source.shape[d]} (input shape {source.shape})"
                                     f"{site.where}")
            buffers[out_index] = source.transpose(permutation)[index]
        return run

    def python_call(self, call: PythonCall) -> Action:
        callback = ReferenceCallback(self.program.python_nodes[call.callback])
        input_indices = [b.index for b in call.inputs]
        outputs = [(b.index, np.dtype(b.dtype), b.ndim) for b in call.outputs]
        op = call.site.op

        def run(buffers: list) -> None:
            results = callback(*[buffers[i] for i in input_indices])
            if len(results) != len(outputs):
                raise RuntimeError(f"{op}: the reference returned {len(results)} outputs, "
                                   f"expected {len(outputs)}")
            for (index, dtype, ndim), item in zip(outputs, results):
                array = np.asarray(item)
                if array.dtype != dtype or not array.flags.aligned or \
                        not array.dtype.isnative:
                    array = np.asarray(array.astype(dtype), dtype=dtype)
                if array.ndim != ndim:
                    raise RuntimeError(f"{op}: the reference returned a {array.ndim}-d array, "
                                       f"expected {ndim}-d")
                buffers[index] = array
        return run


# -- the runner --------------------------------------------------------------------------------

def _input_array(value: Any, buffer: Buffer, position: int) -> np.ndarray:
    """An argument as the kernels read it (the C entry point's tj_input rules)."""
    dtype = np.dtype(buffer.dtype)
    if isinstance(value, np.ndarray):
        if value.ndim != buffer.ndim:
            raise TypeError(f"input {position}: expected {buffer.ndim} dimensions, "
                            f"got {value.ndim}")
        if value.dtype == dtype and value.flags.aligned and value.dtype.isnative:
            return value
        return value.astype(dtype, casting="safe")
    array = np.asarray(value, dtype=dtype)
    if array.ndim != buffer.ndim:
        raise TypeError(f"input {position}: expected {buffer.ndim} dimensions, got {array.ndim}")
    return array


class NumbaRunner:
    """A function graph on the numba backend: call it with the list of input values.

    ``source`` is the generated Python; ``program`` the kernel program it
    prints; ``reference_nodes`` the nodes that run through their NumPy
    reference. Kernels compile when a call first needs them.
    """

    def __init__(self, fgraph, program: KernelProgram, source: str,
                 kernels: LoadedKernels) -> None:
        self.fgraph = fgraph
        self.program = program
        self.source = source
        self.kernels = kernels
        self.n_buffers = max([b.index for b in program.buffers()] + [-1]) + 1
        self.inputs = list(program.inputs)
        self.constants = [(b.index, _native(value, b.dtype)) for b, value in program.constants]
        compiler = _StepCompiler(program, kernels)
        self.actions = [compiler.action(n, step) for n, step in enumerate(program.steps)]
        self.outputs = self._output_rules(program)

    @staticmethod
    def _output_rules(program: KernelProgram) -> list[tuple[int, int]]:
        """(buffer index, rule): 1 returns a loop's fresh array as is, 2 keeps a
        reference's array if it owns its memory, 0 copies."""
        rules, returned = [], set()
        for buffer in program.outputs:
            first = buffer.index not in returned
            returned.add(buffer.index)
            rule = 1 if buffer.origin == "loop" and first else \
                2 if buffer.origin == "python" and first else 0
            rules.append((buffer.index, rule))
        return rules

    @property
    def reference_nodes(self) -> list:
        return list(self.program.python_nodes)

    def __call__(self, input_values: Sequence[Any]) -> list:
        if len(input_values) != len(self.inputs):
            raise TypeError(f"expected {len(self.inputs)} inputs, got {len(input_values)}")
        buffers: list = [None] * self.n_buffers
        arguments = []
        for position, (buffer, value) in enumerate(zip(self.inputs, input_values)):
            array = _input_array(value, buffer, position)
            buffers[buffer.index] = array
            arguments += [value, array]
        for index, value in self.constants:
            buffers[index] = value
        for action in self.actions:
            action(buffers)
        results = []
        for index, rule in self.outputs:
            array = buffers[index]
            if rule == 2:
                keep = (array.flags.owndata and array.flags.writeable and array.base is None
                        and not any(array is argument for argument in arguments))
                rule = 1 if keep else 0
            results.append(array if rule == 1 else array.copy(order="C"))
        return results

    def __repr__(self) -> str:
        return (f"<NumbaRunner: {len(self.program.steps)} steps, "
                f"{len(self.program.python_nodes)} through the reference>")


def generate_numba_source(fgraph) -> tuple[KernelProgram, str]:
    """The kernel program of ``fgraph`` and its numba source (deterministic text)."""
    from tracejit.codegen.lower import lower_graph

    program = lower_graph(fgraph)
    return program, render_numba_module(program)


def numba_runner(fgraph, mode: str = "FAST_RUN") -> NumbaRunner:
    """Compile ``fgraph`` (already rewritten) for the numba backend.

    Raises NumbaUnavailableError when numba is not installed. Kernels are
    compiled on first use (numba's disk cache makes that fast in later
    processes).
    """
    _numba()
    program, source = generate_numba_source(fgraph)
    return NumbaRunner(fgraph, program, source, load_source(source))


# -- for make_runner: what FAST_RUN does when the C backend cannot run ------------------------

def fallback_runner(fgraph, mode: str = "FAST_RUN"):
    """The numba backend where numba imports, else the reference interpreter."""
    if numba_available():
        return numba_runner(fgraph, mode)
    from tracejit.runtime.interpreter import Interpreter
    return Interpreter(fgraph)


def warn_fallback(reason: str, stacklevel: int = 2) -> None:
    """The one ``BackendFallbackWarning`` saying why FAST_RUN is not running C code."""
    import warnings
    target = ("the numba backend" if numba_available()
              else "the NumPy interpreter (install numba for compiled loops)")
    warnings.warn(f"tracejit: {reason}; FAST_RUN falls back to {target}. Set config.cxx "
                  f"(or TRACEJIT_FLAGS='cxx=...') to a working C compiler to get the C backend.",
                  BackendFallbackWarning, stacklevel=stacklevel + 1)
