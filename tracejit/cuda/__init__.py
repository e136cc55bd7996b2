"""The CUDA backend (device="cuda")."""

from __future__ import annotations


def cuda_runner(fgraph, mode):
    raise NotImplementedError(
        "device='cuda' is not available yet in this version of tracejit; use device='cpu'")
