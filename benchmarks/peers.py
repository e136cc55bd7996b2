"""Importing the peer libraries the same way in every workload.

Each function imports a library on first use and applies the settings every
workload needs: float64 enabled in JAX (float32 inputs stay float32), and
the persistent compilation caches pointed at ``BENCH_CACHE_DIR`` when the
parent sets it (W6 measures cold and warm caches in a fresh directory).
"""

from __future__ import annotations

import os
from typing import Any


def cache_dir(library: str) -> str | None:
    """The per-library cache directory under BENCH_CACHE_DIR, or None for the defaults."""
    base = os.environ.get("BENCH_CACHE_DIR")
    if not base:
        return None
    path = os.path.join(base, library)
    os.makedirs(path, exist_ok=True)
    return path


def import_jax() -> tuple[Any, Any]:
    """(jax, jax.numpy) with x64 on and, under W6, a persistent compilation cache."""
    import jax
    jax.config.update("jax_enable_x64", True)
    directory = cache_dir("jax")
    if directory:
        jax.config.update("jax_compilation_cache_dir", directory)
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    import jax.numpy as jnp
    return jax, jnp


def import_torch() -> Any:
    # TORCHINDUCTOR_CACHE_DIR / TRITON_CACHE_DIR are read from the environment (set by the parent).
    import torch
    return torch


def import_pytensor() -> tuple[Any, Any]:
    # PYTENSOR_FLAGS=base_compiledir=... is set by the parent for W6.
    import pytensor
    import pytensor.tensor as pt
    return pytensor, pt


def import_numba() -> Any:
    # NUMBA_CACHE_DIR is set by the parent, so cache=True never writes into the source tree.
    import numba
    return numba


def cache_environment(base: str) -> dict[str, str]:
    """Environment variables that point every library's on-disk cache under ``base``."""
    return {
        "BENCH_CACHE_DIR": base,
        "TRACEJIT_CACHE_DIR": os.path.join(base, "tracejit"),
        "NUMBA_CACHE_DIR": os.path.join(base, "numba"),
        "PYTENSOR_FLAGS": f"base_compiledir={os.path.join(base, 'pytensor')}",
        "TORCHINDUCTOR_CACHE_DIR": os.path.join(base, "inductor"),
        "TRITON_CACHE_DIR": os.path.join(base, "triton"),
    }
