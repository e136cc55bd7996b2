"""Where in the user's code a graph node was created.

Each Apply remembers one (file, line, function) triple: the innermost frame
outside tracejit and NumPy. Walking frames costs well under a microsecond
per level and keeps no traceback alive, unlike storing a full stack.
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass

import numpy as np

_TRACEJIT_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_NUMPY_DIR = os.path.dirname(os.path.abspath(np.__file__)) + os.sep
_SKIPPED = (_TRACEJIT_DIR, _NUMPY_DIR)


@dataclass(frozen=True)
class SourceInfo:
    filename: str
    lineno: int
    function: str

    def __str__(self) -> str:
        return f'File "{self.filename}", line {self.lineno}, in {self.function}'

    def code_line(self) -> str:
        import linecache
        return linecache.getline(self.filename, self.lineno).strip()

    def describe(self) -> str:
        """Two lines for an error message: where, and the code itself."""
        code = self.code_line()
        return f"{self}\n    {code}" if code else str(self)


_internal_cache: dict[str, bool] = {}


def _is_internal(filename: str) -> bool:
    """Whether a code object's file belongs to tracejit, NumPy or the runtime."""
    known = _internal_cache.get(filename)
    if known is None:
        if filename.startswith("<"):
            known = filename.startswith(("<frozen", "<__array_function__"))
        else:
            known = os.path.abspath(filename).startswith(_SKIPPED)
        _internal_cache[filename] = known
    return known


def user_source_info() -> SourceInfo | None:
    """The innermost calling frame that is the user's own code."""
    frame = sys._getframe(1)
    while frame is not None:
        filename = frame.f_code.co_filename
        if not _is_internal(filename):
            return SourceInfo(filename, frame.f_lineno, frame.f_code.co_name)
        frame = frame.f_back
    return None
