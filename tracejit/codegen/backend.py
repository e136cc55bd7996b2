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
    from tracejit.codegen.build import build_extension
    from tracejit.codegen.c_prelude import link_libraries

    program, source = generate_source(fgraph)
    module = build_extension(source, MODULE_NAME, extra_flags=EXTRA_FLAGS,
                             libraries=link_libraries(), werror=werror)
    return CRunner(fgraph, program, source, module)
