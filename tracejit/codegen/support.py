"""Process-wide helper extensions (the call dispatcher, the buffer pool): load, or build once.

Each is one fixed C source, built once per machine through the module
cache and loaded once per process on first use. Where it is not on disk
yet and ``config.background_compile`` is on, the build runs in the
background (tracejit.codegen.background) and ``get()`` returns None until
it is done: every user of a support module has a slower path that works
without it.
"""

from __future__ import annotations

import threading
from types import ModuleType
from typing import Any

from tracejit.config import config


class SupportModule:
    """One helper extension, built from ``source`` under ``module_name``."""

    def __init__(self, source: str, module_name: str) -> None:
        self.source = source
        self.module_name = module_name
        self._module: ModuleType | None = None
        self._build: Any = None  # the Future of a background build
        self._failed_compilers: set[str] = set()
        self._on_load: list = []
        # Build threads bind compiled graphs too, and ask for the module then.
        self._lock = threading.RLock()

    def on_load(self, callback) -> None:
        """Call ``callback(module)`` once the module is loaded (now, if it already is).

        A module built in the background is noticed by the next ``get()``.
        """
        with self._lock:
            if self._module is None:
                self._on_load.append(callback)
                return
        callback(self._module)

    def get(self, wait: bool | None = None) -> ModuleType | None:
        """The loaded extension, or None where it cannot be built or is still building.

        ``wait=None`` waits for a compiler run unless ``config.background_compile``.
        A failure is remembered per ``config.cxx``, as the C backend does:
        a later call under a working compiler tries again.
        """
        if self._module is not None:
            return self._module
        with self._lock:
            return self._get_locked(wait)

    def _get_locked(self, wait: bool | None) -> ModuleType | None:
        if self._module is not None:
            return self._module
        from tracejit.codegen.build import (
            CompileError, CompilerNotFoundError, build_extension, cached_extension)
        compiler = config.cxx
        if compiler in self._failed_compilers:
            return None
        if wait is None:
            wait = not config.background_compile
        from tracejit.codegen import background
        if self._build is not None and background.is_orphaned(self._build):
            self._build = None  # started by the parent of this forked process
        try:
            if self._build is not None and (wait or self._build.done()):
                build, self._build = self._build, None
                module = build.result()
            elif wait:
                module = build_extension(self.source, self.module_name)
            else:
                module = cached_extension(self.source, self.module_name)
                if module is None and self._build is None:
                    self._build = background.submit(build_extension, self.source,
                                                    self.module_name)
                    # Load it as soon as it is built (on the build thread), so
                    # on_load callbacks do not wait for a later get().
                    self._build.add_done_callback(lambda _: self.get(wait=False))
        except (CompileError, CompilerNotFoundError, OSError):
            self._failed_compilers.add(compiler)
            return None
        if module is not None:
            self._loaded(module)
        return module

    def _loaded(self, module: ModuleType) -> None:
        self._module = module
        callbacks, self._on_load = self._on_load, []
        for callback in callbacks:
            callback(module)
