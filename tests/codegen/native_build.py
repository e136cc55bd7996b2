"""Test helper: compile a graph for the native-kernel tests with warnings as errors."""

import os

import tracejit as tj
from tracejit.codegen.entry import CRunner


def werror_function(inputs, outputs):
    """``tj.function(inputs, outputs)`` in FAST_RUN, its C module built with -Wall -Werror.

    The compiled function's runner must be the C module itself.
    """
    previous = os.environ.get("TRACEJIT_WERROR")
    os.environ["TRACEJIT_WERROR"] = "1"
    try:
        fast = tj.function(inputs, outputs, mode="FAST_RUN")
    finally:
        if previous is None:
            del os.environ["TRACEJIT_WERROR"]
        else:
            os.environ["TRACEJIT_WERROR"] = previous
    assert isinstance(fast._runner, CRunner), fast._runner
    return fast
