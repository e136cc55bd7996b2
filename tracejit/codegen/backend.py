"""The C backend: FunctionGraph -> kernel program -> C -> loaded module -> runner."""

from __future__ import annotations

from tracejit.codegen.entry import CRunner

MODULE_NAME = "tracejit_graph"
# Signed integer overflow wraps, as it does in NumPy.
EXTRA_FLAGS = ("-fwrapv",)


def generate_source(fgraph) -> tuple[object, str]:
    """The kernel program of ``fgraph`` and its C source (deterministic text)."""
    from tracejit.codegen.c_render import render_module
    from tracejit.codegen.lower import lower_graph

    program = lower_graph(fgraph)
    return program, render_module(program, MODULE_NAME)


def c_runner(fgraph, mode: str = "FAST_RUN", werror: bool | None = None) -> CRunner:
    """Compile ``fgraph`` (already rewritten) to one C module and bind its entry point.

    Raises CompilerNotFoundError when no C compiler works and CompileError
    when the compiler rejects the generated code.
    """
    program, source = generate_source(fgraph)
    return bind_runner(fgraph, program, source, werror=werror)


def bind_runner(fgraph, program, source: str, werror: bool | None = None) -> CRunner:
    """Build ``source`` (or find it in the module cache) and bind it to its graph and program.

    The graph cache (graph_cache.py) calls this with a stored graph, program
    and source, so a warm process builds and links exactly as a cold one.
    """
    from tracejit.codegen.build import build_extension

    module = build_extension(source, MODULE_NAME, **_build_options(program, werror))
    return CRunner(fgraph, program, source, module)


def cached_runner(fgraph, program, source: str, werror: bool | None = None) -> CRunner | None:
    """``bind_runner``'s result where the module needs no compiler run (memory or disk); else None."""
    from tracejit.codegen.build import cached_extension

    module = cached_extension(source, MODULE_NAME, **_build_options(program, werror))
    return None if module is None else CRunner(fgraph, program, source, module)


def _build_options(program, werror: bool | None) -> dict:
    from tracejit.codegen.c_prelude import link_libraries

    native = native_build_args(program)
    if native:
        # Lowering sets BLAS's thread count; a graph loaded from the graph
        # cache was never lowered in this process.
        from tracejit.codegen.native.linalg import ensure_blas_threads
        ensure_blas_threads()
    return dict(extra_flags=EXTRA_FLAGS,
                libraries=[*native.pop("libraries", ()), *link_libraries()],
                werror=werror, **native)


def native_build_args(program) -> dict:
    """The ``build_extension`` arguments the program's native kernels need.

    Only modules whose kernels call BLAS link it (its headers, library and
    symbol macros), so every other module keeps its fast load.
    """
    from tracejit.codegen.native.linalg import program_needs_blas

    if not program_needs_blas(program):
        return {}
    from tracejit.codegen.blas import blas_build_args

    args = blas_build_args()
    return {"include_dirs": args["include_dirs"], "library_dirs": args["library_dirs"],
            "libraries": args["libraries"], "define_macros": args["define_macros"]}
