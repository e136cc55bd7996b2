"""The on-disk cache of rewritten graphs: a warm process skips rewriting and rendering.

The module cache (cache.py) is keyed by the generated C source, so a new
process that calls an already-compiled function still had to rewrite the
traced graph, lower it and render the source before it could find the
module on disk. That cost (tens of milliseconds for an MLP training step)
dominated a warm first call. This cache maps a cheap structural
fingerprint of the *unrewritten* graph to what the C runner needs: the
rewritten graph, its kernel program and its source. A warm process traces,
fingerprints, loads the entry and finds the module by its source as before.

Correctness rests on the fingerprint changing whenever the generated code
could change. It covers:

- the graph: every node's op (class and ``__props__``, scalar ops by name,
  parameters and C expression), its inputs (by position in a canonical
  numbering), its output types and names, and the user's source line (it is
  printed into error messages); constants by type and exact bytes; the
  inputs' types and names; the outputs; and the relative creation order of
  the variables (the rewrites use it to order commutative operands);
- the mode, device and every config flag except ``cache_dir``;
- tracejit's own code (path, size and modification time of each of its
  ``.py`` files, read once per process), the Python and NumPy versions and
  the vector-math functions the C library offers.

Anything the fingerprint cannot encode exactly (an op parameter of an
unknown type, a lambda) makes the graph uncacheable: it is then rewritten
and rendered as before. An entry is stored only for a graph that compiled
to C. Entries are pickles (loading one runs code, so they live in the same
private cache directory as the modules, checked by ``DiskCache``), written
atomically and checked by a sha256 before loading; a damaged one is
deleted and rebuilt. Shared variables are never pickled: the graph's inputs
are stored as positions and bound to the current process's inputs when
loaded. ``TRACEJIT_GRAPH_CACHE=0`` turns the cache off.

Layout, under ``config.cache_dir``: ``graphs/<fp[:2]>/<fp>.pkl``.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import pickle
import sys
import warnings
from typing import Any

import numpy as np

from tracejit.codegen.cache import TRACEJIT_VERSION, CacheWarning, DiskCache, cache_key, sha256_hex
from tracejit.config import config
from tracejit.graph.basic import Constant, Op, SharedVariable, Tag, Variable
from tracejit.graph.fgraph import FunctionGraph
from tracejit.graph.sourceinfo import SourceInfo
from tracejit.graph.type import TensorType
from tracejit.ops.composite import Composite
from tracejit.ops.scalar import ScalarOp

GRAPHS_DIR = "graphs"
# Bump when the entry layout changes (what is pickled, not the graph IR:
# the IR is covered by the code fingerprint).
FORMAT_VERSION = 1
_MAGIC = b"tracejit-graph %d\n" % FORMAT_VERSION
_DISABLE_VARIABLE = "TRACEJIT_GRAPH_CACHE"
# Flags that do not change the generated code.
_IGNORED_FLAGS = frozenset({"cache_dir"})


class Unfingerprintable(Exception):
    """The graph holds something the fingerprint cannot encode exactly."""


def enabled() -> bool:
    return os.environ.get(_DISABLE_VARIABLE, "1").strip().lower() not in ("0", "false", "no", "off")


# -- the fingerprint ------------------------------------------------------------------------------
def graph_fingerprint(fgraph: FunctionGraph, mode: str, device: str) -> str | None:
    """A hex digest of everything the rewritten graph and its C source depend on, or None.

    None means the graph cannot be fingerprinted exactly (see
    ``Unfingerprintable``); the caller then compiles without this cache.
    """
    try:
        graph_text = _encode_graph(fgraph)
    except Unfingerprintable:
        return None
    flags = sorted((name, value) for name, value in config.as_dict().items()
                   if name not in _IGNORED_FLAGS)
    return cache_key("graph", str(FORMAT_VERSION), TRACEJIT_VERSION, code_fingerprint(),
                     environment_fingerprint(), mode, device, repr(_encode(flags)), graph_text)


def _encode_graph(fgraph: FunctionGraph) -> str:
    numbers: dict[int, int] = {}   # id(variable) -> its number in this encoding
    variables: list[Variable] = []
    parts: list[Any] = []

    def number(var: Variable) -> int:
        known = numbers.get(id(var))
        if known is None:
            known = numbers[id(var)] = len(variables)
            variables.append(var)
        return known

    for var in fgraph.inputs:
        parts.append(("input", number(var), _encode_type(var.type), var.name,
                      type(var).__name__))
    for node in fgraph.apply_nodes:
        inputs = []
        for var in node.inputs:
            if isinstance(var, Constant) and id(var) not in numbers:
                parts.append(("const", number(var), _encode_constant(var)))
            elif var.owner is None and id(var) not in numbers:
                # A free variable that is not an input: FunctionGraph refuses
                # those, but stay exact whatever happens.
                raise Unfingerprintable(f"free variable {var} is not an input")
            inputs.append(number(var))
        outputs = tuple((number(out), _encode_type(out.type), out.name) for out in node.outputs)
        parts.append(("node", _encode(node.op), tuple(inputs), outputs, _encode_source(node.source)))
    outputs = []
    for var in fgraph.outputs:
        if isinstance(var, Constant) and id(var) not in numbers:
            parts.append(("const", number(var), _encode_constant(var)))
        outputs.append(number(var))
    parts.append(("outputs", tuple(outputs)))
    # The rewrites order some operands by creation; keep the relative order.
    order = sorted(range(len(variables)), key=lambda i: variables[i].creation_index)
    parts.append(("creation order", tuple(order)))
    return repr(parts)


def _encode_type(type_: TensorType) -> tuple:
    if type(type_) is not TensorType:
        raise Unfingerprintable(f"unknown type {type(type_).__name__}")
    return (type_.dtype, type_.shape, type_.weak)


def _encode_constant(var: Constant) -> tuple:
    data = var.data
    tag = tuple(sorted((key, _encode(value)) for key, value in var.tag.__dict__.items()
                       if key == "python_value"))
    return (type(var).__name__, _encode_type(var.type), var.name, data.dtype.str, data.shape,
            sha256_hex(np.ascontiguousarray(data).tobytes()), tag)


def _encode_source(source: SourceInfo | None) -> tuple | None:
    if source is None:
        return None
    return (source.filename, source.lineno, source.function)


_PLAIN = (type(None), bool, int, float, complex, str, bytes)


def _encode(value: Any) -> Any:
    """A nested tuple of plain values that is equal for equal inputs in any process."""
    if type(value) in _PLAIN:
        # Type names keep 1, 1.0 and True apart; repr keeps floats exact.
        return (type(value).__name__, repr(value))
    if isinstance(value, (tuple, list)):
        return (type(value).__name__, tuple(_encode(item) for item in value))
    if isinstance(value, (set, frozenset)):
        return (type(value).__name__, tuple(sorted(repr(_encode(item)) for item in value)))
    if isinstance(value, dict):
        return ("dict", tuple(sorted((repr(_encode(k)), _encode(v)) for k, v in value.items())))
    if isinstance(value, Composite):
        return ("composite", value.input_dtypes,
                tuple((_encode(op), _encode(args), dtype)
                      for op, args, dtype in value.steps), _encode(value.output))
    if isinstance(value, ScalarOp):
        if type(value) is not ScalarOp:
            raise Unfingerprintable(f"unknown scalar op class {type(value).__name__}")
        return ("scalar", value.name, _encode(value.params), value.nin, value.c_expr)
    if isinstance(value, Op):
        cls = type(value)
        return ("op", cls.__module__, cls.__qualname__,
                tuple((name, _encode(getattr(value, name))) for name in cls.__props__))
    if isinstance(value, TensorType):
        return ("type", _encode_type(value))
    if isinstance(value, np.dtype):
        return ("dtype", value.str)
    if isinstance(value, np.generic):
        return ("npscalar", value.dtype.str, value.tobytes())
    if isinstance(value, np.ndarray):
        return ("array", value.dtype.str, value.shape,
                sha256_hex(np.ascontiguousarray(value).tobytes()))
    if isinstance(value, slice):
        return ("slice", _encode(value.start), _encode(value.stop), _encode(value.step))
    if value is Ellipsis:
        return ("ellipsis",)
    raise Unfingerprintable(f"cannot fingerprint a {type(value).__name__}")


@functools.lru_cache(maxsize=None)
def code_fingerprint() -> str:
    """Path, size and modification time of every tracejit source file (once per process).

    Editing any file of the library (rewrites, lowering, rendering, an op)
    gives new fingerprints, so a development checkout never loads a graph
    rewritten by older code.
    """
    import tracejit

    root = os.path.dirname(os.path.abspath(tracejit.__file__))
    entries = []
    for directory, subdirectories, files in os.walk(root):
        subdirectories[:] = sorted(d for d in subdirectories if d != "__pycache__")
        for name in sorted(files):
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                info = os.stat(path)
                entries.append(f"{os.path.relpath(path, root)}:{info.st_size}:{info.st_mtime_ns}")
    return cache_key(root, *entries)


@functools.lru_cache(maxsize=None)
def environment_fingerprint() -> str:
    """What outside tracejit shapes the generated code: Python, NumPy, libmvec, BLAS."""
    import platform

    from tracejit.codegen.c_prelude import vector_math_functions

    blas = None
    try:
        from tracejit.codegen.blas import find_blas
        blas = find_blas().library_path
    except Exception:  # no BLAS wheel (BlasNotFoundError) or no BLAS support in this checkout
        pass
    return repr((sys.version, np.__version__, platform.machine(), vector_math_functions(), blas))


# -- storing and loading --------------------------------------------------------------------------
def entry_path(directory: str, fingerprint: str) -> str:
    return os.path.join(directory, GRAPHS_DIR, fingerprint[:2], f"{fingerprint}.pkl")


def store_graph(fingerprint: str, fgraph: FunctionGraph, program: Any, source: str) -> bool:
    """Write the entry for ``fingerprint``; False (and nothing written) if it cannot be pickled.

    ``fgraph`` is the rewritten graph; its inputs are those of the graph
    that was fingerprinted (rewriting keeps them), stored as positions.
    """
    import tempfile

    buffer = io.BytesIO()
    try:
        _GraphPickler(buffer, fgraph.inputs).dump(
            {"fgraph": fgraph, "program": program, "source": source})
    except Exception:  # noqa: BLE001 -- anything unpicklable (or a graph too deep to
        return False   # pickle) is simply not cached: the cache is only a shortcut
    payload = buffer.getvalue()
    directory = DiskCache(config.cache_dir).directory
    path = entry_path(directory, fingerprint)
    os.makedirs(os.path.join(directory, GRAPHS_DIR), mode=0o700, exist_ok=True)
    os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        with os.fdopen(descriptor, "wb") as entry_file:
            entry_file.write(_MAGIC + sha256_hex(payload).encode() + b"\n" + payload)
        os.replace(temporary, path)   # readers see a whole entry or none
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    return True


def lookup_graph(fingerprint: str, fgraph: FunctionGraph) -> dict | None:
    """The stored {"fgraph", "program", "source"} bound to ``fgraph``'s inputs, or None.

    The loaded graph's inputs are ``fgraph``'s own input variables (shared
    variables included), exactly as after rewriting ``fgraph`` in place.
    """
    directory = DiskCache(config.cache_dir).directory
    path = entry_path(directory, fingerprint)
    try:
        with open(path, "rb") as entry_file:
            data = entry_file.read()
    except FileNotFoundError:
        return None
    header_end = len(_MAGIC) + 65
    payload = data[header_end:]
    if not data.startswith(_MAGIC) or data[len(_MAGIC):header_end - 1].decode(
            "ascii", "replace") != sha256_hex(payload):
        _discard(path, "truncated or corrupted")
        return None
    try:
        entry = _GraphUnpickler(io.BytesIO(payload), fgraph.inputs).load()
    except Exception as exc:   # an entry from other code; never fatal, rebuilt below
        _discard(path, f"unreadable ({type(exc).__name__}: {exc})")
        return None
    loaded = entry["fgraph"]
    if len(loaded.inputs) != len(fgraph.inputs) or any(
            a is not b for a, b in zip(loaded.inputs, fgraph.inputs)):
        _discard(path, "bound to other inputs")
        return None
    loaded.clone_map = fgraph.clone_map
    _renumber_creation(loaded)
    return entry


def _discard(path: str, problem: str) -> None:
    warnings.warn(f"tracejit graph cache entry {path} is {problem}; rebuilding it",
                  CacheWarning, stacklevel=4)
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _renumber_creation(fgraph: FunctionGraph) -> None:
    """Give loaded variables creation indices of this process, keeping their order."""
    from tracejit.graph import basic

    inputs = {id(v) for v in fgraph.inputs}
    loaded = [v for v in fgraph.variables if id(v) not in inputs]
    for var in sorted(loaded, key=lambda v: v.creation_index):
        var.creation_index = next(basic._creation_counter)


# -- pickling -------------------------------------------------------------------------------------
def _scalar_op(name: str, params: tuple) -> ScalarOp:
    from tracejit.ops.scalar import SCALAR_OPS, cast_op

    if name == "cast" and len(params) == 1:
        return cast_op(params[0])
    return SCALAR_OPS[name]


def _tensor_type(dtype: str, shape: tuple, weak: bool) -> TensorType:
    # Types are immutable, so equal ones are shared: building one checks its
    # dtype through NumPy, which made up most of the cost of loading a graph.
    key = (dtype, shape, weak)
    found = _TYPES.get(key)
    if found is None:
        found = _TYPES[key] = TensorType(dtype, shape=shape, weak=weak)
    return found


_TYPES: dict[tuple, TensorType] = {}


def _tag(entries: dict) -> Tag:
    tag = Tag()
    tag.__dict__.update(entries)
    return tag


class _GraphPickler(pickle.Pickler):
    """Pickles a rewritten graph: inputs by position, scalar ops by name, types rebuilt.

    TensorType caches a string hash, which differs between processes, so it
    is rebuilt by its constructor; scalar ops hold lambdas, so they are
    found again by name; tags keep only plain values (trace-time arrays and
    variables of the user's graph stay behind).
    """

    def __init__(self, file, inputs: list) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self._inputs = {id(var): position for position, var in enumerate(inputs)}

    def persistent_id(self, obj: Any) -> Any:
        position = self._inputs.get(id(obj))
        if position is not None:
            return position
        if isinstance(obj, SharedVariable):
            raise pickle.PicklingError("a shared variable that is not a graph input")
        return None

    def reducer_override(self, obj: Any) -> Any:
        cls = type(obj)
        if cls is TensorType:
            return _tensor_type, (obj.dtype, obj.shape, obj.weak)
        if cls is ScalarOp:
            try:
                found = _scalar_op(obj.name, obj.params)
            except KeyError:
                found = None
            if found is not obj:
                raise pickle.PicklingError(f"scalar op {obj} is not in the table")
            return _scalar_op, (obj.name, obj.params)
        if cls is Composite:
            return Composite, (obj.input_dtypes, obj.steps, obj.output)
        if cls is Tag:
            return _tag, ({k: v for k, v in obj.__dict__.items() if type(v) in _PLAIN},)
        if isinstance(obj, ScalarOp):
            raise pickle.PicklingError(f"unknown scalar op class {cls.__name__}")
        return NotImplemented


class _GraphUnpickler(pickle.Unpickler):
    def __init__(self, file, inputs: list) -> None:
        super().__init__(file)
        self._inputs = inputs

    def persistent_load(self, position: Any) -> Any:
        return self._inputs[position]


# -- what the pipeline calls ----------------------------------------------------------------------
def load_runner(fgraph: FunctionGraph, mode: str, device: str) -> tuple:
    """(fingerprint or None, (rewritten graph, C runner) or None) for ``fgraph``.

    A None fingerprint means the graph is not cacheable (or the cache is
    off); a fingerprint without a runner means a miss, to be filled by
    ``remember_runner`` once the graph is compiled.
    """
    if not enabled():
        return None, None
    fingerprint = graph_fingerprint(fgraph, mode, device)
    if fingerprint is None:
        return None, None
    entry = lookup_graph(fingerprint, fgraph)
    if entry is None:
        return fingerprint, None
    from tracejit.codegen.backend import bind_runner
    from tracejit.codegen.build import CompileError, CompilerNotFoundError
    try:
        runner = bind_runner(entry["fgraph"], entry["program"], entry["source"])
    except (CompileError, CompilerNotFoundError):
        # The compiler changed under a stored graph; the normal path
        # compiles again and reports (or falls back) as usual.
        return fingerprint, None
    return fingerprint, (entry["fgraph"], runner)


def remember_runner(fingerprint: str, fgraph: FunctionGraph, runner: Any) -> None:
    """Store a compiled graph (only C runners: others have nothing to skip next time)."""
    from tracejit.codegen.entry import CRunner

    if type(runner) is not CRunner:
        return
    try:
        store_graph(fingerprint, fgraph, runner.program, runner.source)
    except OSError:
        pass  # a full or read-only disk costs the next process time, not correctness


__all__ = ["load_runner", "remember_runner", "graph_fingerprint", "lookup_graph", "store_graph",
           "code_fingerprint", "environment_fingerprint", "Unfingerprintable", "enabled"]
