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

A child made by ``fork`` inherits the parent's pending Futures but not its
threads: they would never finish there. ``is_orphaned(future)`` tells the
users of a Future to submit their build again in the child.
"""

from __future__ import annotations

import os
import threading
from typing import Any, Callable

_executor: Any = None
_pending: list = []
_lock = threading.Lock()

# gcc is single-threaded; two builds keep two cores busy without starving the caller.
MAX_WORKERS = 2


_process = os.getpid()


def submit(function: Callable[..., Any], *args: Any) -> Any:
    """Run ``function(*args)`` on a build thread; returns its Future."""
    global _executor
    from concurrent.futures import ThreadPoolExecutor
    with _lock:
        if _executor is None:
            _executor = ThreadPoolExecutor(max_workers=MAX_WORKERS,
                                           thread_name_prefix="tracejit-build")
        future = _executor.submit(function, *args)
        future.tracejit_process = _process
        _pending[:] = [f for f in _pending if not f.done()] + [future]
    return future


def is_orphaned(future: Any) -> bool:
    """Whether ``future`` was submitted in a parent process before a fork (it never finishes here)."""
    return getattr(future, "tracejit_process", _process) != _process


def run_command(command: list[str]) -> Any:
    """``subprocess.run(command, capture_output=True, text=True)``, safe against a fork meanwhile.

    While Popen starts the compiler, a pipe's write end exists that only
    the compiler's exec closes. A thread that forks then gives the child a
    copy that is never closed, so Popen in this process waits for the
    child to exit, and a child waiting for this build never does. A fork
    therefore waits (``_spawning``) until the compiler has started.
    """
    import subprocess
    with _spawning:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
    stdout, stderr = process.communicate()
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


_spawning = threading.Lock()


def _forget_parent_builds() -> None:
    global _executor, _lock, _process
    _executor, _lock, _process = None, threading.Lock(), os.getpid()
    _pending.clear()
    _spawning.release()  # taken by this thread before the fork


if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_spawning.acquire, after_in_parent=_spawning.release,
                        after_in_child=_forget_parent_builds)


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
