"""Compiler runs that happen while the program goes on.

With ``config.background_compile`` (the default), a module that is not in
the disk cache yet is built on a worker thread: the C compiler is a
subprocess, so the thread spends its time waiting and the caller keeps the
interpreter lock. Meanwhile the caller uses what it has (the NumPy
interpreter for a graph, the Python call path instead of the C dispatcher,
plain NumPy allocation instead of the buffer pool) and switches when the
build is done.

The workers are ordinary (non-daemon) threads of one executor, so Python
waits for builds in flight at exit and the next process finds them in the
disk cache.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

_executor: Any = None
_pending: list = []
_lock = threading.Lock()

# gcc is single-threaded; two builds keep two cores busy without starving the caller.
MAX_WORKERS = 2


def submit(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` on a build thread; returns its Future."""
    global _executor
    from concurrent.futures import ThreadPoolExecutor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                           thread_name_prefix="tracejit-build")
        future = _executor.submit(function, *args)
        _pending[:] = [f for f in _pending if not f.done()] + [future]
    return future


def wait(timeout: float | None = None) -> bool:
    """Wait for every build started so far; False if ``timeout`` ran out first."""
    from concurrent.futures import wait as wait_futures
    with _lock:
        pending = list(_pending)
    _, not_done = wait_futures(pending, timeout=timeout)
    return not not_done


def pending_count() -> int:
    with _lock:
        return sum(1 for future in _pending if not future.done())
